/** One line of the chart. */
export interface Series {
  readonly name: string;
  readonly color: string;
  readonly dashed?: boolean;
  readonly points: readonly { readonly x: number; readonly y: number }[];
}

const escapeXml = (text: string) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

function niceStep(max: number, ticks: number): number {
  const raw = max / ticks;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const normalized = raw / magnitude;
  return (normalized <= 1 ? 1 : normalized <= 2 ? 2 : normalized <= 2.5 ? 2.5 : normalized <= 5 ? 5 : 10) * magnitude;
}

const formatCount = (n: number) => (n >= 1000 ? `${n / 1000}k` : String(n));

/**
 * A line chart, x on a log scale, as a standalone SVG document: no library,
 * no fonts beyond the viewer's sans-serif.
 */
export function lineChartSvg(options: {
  readonly title: string;
  readonly subtitle: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly series: readonly Series[];
}): string {
  const width = 880;
  const height = 440;
  const margin = { left: 80, right: 270, top: 64, bottom: 60 };
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;
  const xs = [...new Set(options.series.flatMap((s) => s.points.map((p) => p.x)))].sort((a, b) => a - b);
  const ys = options.series.flatMap((s) => s.points.map((p) => p.y)).filter(Number.isFinite);
  const xMin = Math.log10(Math.min(...xs));
  const xMax = Math.log10(Math.max(...xs));
  const step = niceStep(Math.max(1, ...ys) * 1.1, 5);
  const yMax = Math.ceil((Math.max(1, ...ys) * 1.05) / step) * step;
  const px = (x: number) => margin.left + (xMax === xMin ? plotW / 2 : ((Math.log10(x) - xMin) / (xMax - xMin)) * plotW);
  const py = (y: number) => margin.top + plotH - (y / yMax) * plotH;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="13">`);
  out.push(`<rect width="${width}" height="${height}" fill="white"/>`);
  out.push(`<text x="${margin.left}" y="26" font-size="16" font-weight="bold">${escapeXml(options.title)}</text>`);
  out.push(`<text x="${margin.left}" y="46" fill="#555">${escapeXml(options.subtitle)}</text>`);
  for (let y = 0; y <= yMax + 1e-9; y += step) {
    out.push(`<line x1="${margin.left}" x2="${margin.left + plotW}" y1="${py(y)}" y2="${py(y)}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${margin.left - 8}" y="${py(y) + 4}" text-anchor="end" fill="#333">${y.toLocaleString("en-US")}</text>`);
  }
  for (const x of xs) {
    out.push(`<line x1="${px(x)}" x2="${px(x)}" y1="${margin.top}" y2="${margin.top + plotH}" stroke="#f0f0f0"/>`);
    out.push(`<text x="${px(x)}" y="${margin.top + plotH + 20}" text-anchor="middle" fill="#333">${formatCount(x)}</text>`);
  }
  out.push(`<rect x="${margin.left}" y="${margin.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#999"/>`);
  out.push(`<text x="${margin.left + plotW / 2}" y="${height - 14}" text-anchor="middle">${escapeXml(options.xLabel)}</text>`);
  out.push(
    `<text transform="translate(20 ${margin.top + plotH / 2}) rotate(-90)" text-anchor="middle">${escapeXml(options.yLabel)}</text>`,
  );
  options.series.forEach((series, index) => {
    const points = series.points.filter((p) => Number.isFinite(p.y));
    if (points.length > 0) {
      const d = points.map((p, i) => `${i === 0 ? "M" : "L"}${px(p.x).toFixed(1)},${py(p.y).toFixed(1)}`).join(" ");
      out.push(`<path d="${d}" fill="none" stroke="${series.color}" stroke-width="2.5"${series.dashed ? ' stroke-dasharray="6 4"' : ""}/>`);
      for (const p of points) {
        out.push(`<circle cx="${px(p.x).toFixed(1)}" cy="${py(p.y).toFixed(1)}" r="4" fill="${series.color}"/>`);
      }
    }
    const ly = margin.top + 14 + index * 24;
    const lx = margin.left + plotW + 16;
    out.push(`<line x1="${lx}" x2="${lx + 24}" y1="${ly}" y2="${ly}" stroke="${series.color}" stroke-width="2.5"${series.dashed ? ' stroke-dasharray="6 4"' : ""}/>`);
    out.push(`<text x="${lx + 32}" y="${ly + 4}">${escapeXml(series.name)}${points.length === 0 ? " (absent)" : ""}</text>`);
  });
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}
