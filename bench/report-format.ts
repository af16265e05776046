/** Cell formats and small figures the report's tables and the verdicts share. A missing or non-finite figure shows as "—". */
import type { StreamResult } from "./results.js";

export const int = (n: number | undefined): string => (n === undefined || !Number.isFinite(n) ? "—" : Math.round(n).toLocaleString("en-US"));
export const ms = (n: number | undefined, digits = 2): string => (n === undefined || !Number.isFinite(n) ? "—" : n.toFixed(digits));
export const ratio = (a: number | undefined, b: number | undefined): string =>
  a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0 ? "—" : `${(a / b).toFixed(2)}×`;
/** NaN arrives as null from a saved file. */
export const pct = (n: number | undefined | null): string => (typeof n !== "number" || !Number.isFinite(n) ? "—" : `${(n * 100).toFixed(0)}%`);
export const cores = (n: number | undefined): string => (n === undefined || !Number.isFinite(n) ? "—" : n.toFixed(2));

/** A Markdown table. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const line = (cells: readonly string[]) => `| ${cells.join(" | ")} |`;
  return [line(header), line(header.map(() => "---")), ...rows.map(line)].join("\n");
}

/** The median of the runs (the lower middle one for an even count); NaN for none. */
export const medianOf = (values: readonly number[]): number => [...values].sort((a, b) => a - b)[Math.floor((values.length - 1) / 2)] ?? Number.NaN;

/** Acks per second of server CPU: what one core would sustain; much less sensitive to a busy neighbour than acks/s. */
export const perCore = (x: StreamResult | undefined): number | undefined => (x && x.cpu.server > 0 ? x.throughput / x.cpu.server : undefined);
