/** Aligned text for the fleet commands: label/value blocks and column tables. */

/** Rows of `label  value`, the labels padded to one width. */
export function labelled(rows: readonly (readonly [string, string])[]): string {
  const width = Math.max(...rows.map(([label]) => label.length));
  return rows.map(([label, value]) => `${label.padEnd(width)}  ${value}`).join("\n");
}

/**
 * A table: a heading line, then one line per row, columns two spaces apart,
 * each as wide as its widest cell; text columns are left-aligned, number
 * columns right-aligned. Trailing spaces are trimmed.
 */
export function table(headers: readonly string[], align: readonly ("left" | "right")[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((header, column) => Math.max(header.length, ...rows.map((row) => (row[column] ?? "").length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, column) => {
        const width = widths[column] ?? cell.length;
        return align[column] === "right" ? cell.padStart(width) : cell.padEnd(width);
      })
      .join("  ")
      .trimEnd();
  return [line(headers), ...rows.map(line)].join("\n");
}

/** A rate as a percentage with one decimal: 0.6667 is "66.7%". */
export function percent(rate: number): string {
  return `${(rate * 100).toFixed(1)}%`;
}
