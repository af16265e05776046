/**
 * The soak's verdict: the rules at the top of bench/soak.ts, each a {@link Rule}
 * that holds or not. The samples are split into thirds, the first being
 * warm-up; the middle third is the baseline the last third is held to.
 */
import Database from "better-sqlite3";
import type { LoadStats } from "./load-tally.js";
import type { Sample } from "./sample.js";
import type { ServerExit } from "./soak-server.js";
import { mean, median } from "./statistics.js";

export interface Rule {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

/** Memory, handles and p99 of the last third against the middle third's. */
export function judge(samples: readonly Sample[]): Rule[] {
  const third = Math.floor(samples.length / 3);
  if (third < 1) return [{ name: "enough samples", ok: false, detail: `${samples.length} samples; need at least 3` }];
  const middle = samples.slice(third, samples.length - third);
  const last = samples.slice(samples.length - third);
  const flat = (name: string, of: (s: Sample) => number, slack: number, unit: string): Rule => {
    const before = mean(middle.map(of));
    const after = mean(last.map(of));
    const limit = before * 1.2 + slack;
    return { name, ok: after <= limit, detail: `middle third ${before.toFixed(1)} ${unit}, last third ${after.toFixed(1)} ${unit} (limit ${limit.toFixed(1)})` };
  };
  const p99Before = median(middle.map((s) => s.p99Ms));
  const p99After = median(last.map((s) => s.p99Ms));
  const p99Limit = p99Before * 2 + 5;
  return [
    flat("RSS flat", (s) => s.rssMiB, 16, "MiB"),
    flat("heap flat", (s) => s.heapMiB, 8, "MiB"),
    flat("open fds flat", (s) => s.openFds, 8, "fds"),
    {
      name: "probe p99 stable",
      ok: p99After <= p99Limit,
      detail: `median window p99: middle third ${p99Before.toFixed(2)} ms, last third ${p99After.toFixed(2)} ms (limit ${p99Limit.toFixed(2)})`,
    },
  ];
}

/** What must hold once the soak is over: nothing unexpected failed, watches were ordered, the probe never failed, a clean exit and a sound database. */
export function endRules(end: { readonly final: LoadStats; readonly probeFailures: number; readonly exit: ServerExit; readonly integrity: string }): Rule[] {
  const { final, probeFailures, exit, integrity } = end;
  return [
    { name: "no unexpected call failures", ok: final.unexpected.length === 0, detail: final.unexpected.slice(0, 10).join("; ") || "none" },
    { name: "watch revisions in order", ok: final.watchOrderViolations === 0, detail: `${final.watchEvents} events, ${final.watchOrderViolations} out of order` },
    { name: "probe never failed", ok: probeFailures === 0, detail: `${probeFailures} failures` },
    { name: "server exited 0 on SIGTERM", ok: exit.code === 0, detail: `code ${exit.code}, signal ${exit.signal}` },
    { name: "integrity_check ok", ok: integrity === "ok", detail: integrity },
  ];
}

/** SQLite's integrity_check of the database file ("ok" when sound), read-only. */
export function integrityCheck(dbPath: string): string {
  const db = new Database(dbPath, { readonly: true });
  try {
    return String(db.pragma("integrity_check", { simple: true }));
  } finally {
    db.close();
  }
}
