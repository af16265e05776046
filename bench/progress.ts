/** The suite's progress log, and the number formats it uses (the tables have their own, in report-format.ts). */

/** One line of progress on stdout, marked so it stands apart from the tables. */
export const log = (text: string): void => console.log(`· ${text}`);

/** A whole number with thousands separators. */
export const fmt = (n: number): string => Math.round(n).toLocaleString("en-US");

/** A share as a percentage; NaN (and null, which is what NaN becomes over IPC) shows as "—". */
export const pct = (n: number | null | undefined): string => (typeof n === "number" && Number.isFinite(n) ? `${(n * 100).toFixed(0)}%` : "—");

/** A figure with `digits` decimals; NaN and null show as "—". */
export const fx = (n: number | null | undefined, digits = 2): string => (typeof n === "number" && Number.isFinite(n) ? n.toFixed(digits) : "—");
