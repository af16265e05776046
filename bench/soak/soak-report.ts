/** What the soak prints: a row per sample, then the summary and each rule's verdict. */
import os from "node:os";
import type { Rule } from "./checks.js";
import { totalOps, type LoadStats } from "./load-tally.js";
import type { Sample } from "./sample.js";
import { median } from "./statistics.js";

export const SAMPLE_HEADER = "  elapsed     RSS    heap  fds  hb-streams watch workers  ops/s   probe p50    p99   load";

export function printSample(sample: Sample): void {
  console.log(
    `  ${sample.elapsedS.toFixed(0).padStart(6)} s ${sample.rssMiB.toFixed(1).padStart(6)} ${sample.heapMiB.toFixed(1).padStart(7)} ${String(sample.openFds).padStart(4)}` +
      ` ${String(sample.heartbeatStreams).padStart(10)} ${String(sample.watchStreams).padStart(5)} ${String(sample.workers).padStart(7)}` +
      ` ${sample.opsPerS.toFixed(0).padStart(6)} ${sample.p50Ms.toFixed(2).padStart(8)} ms ${sample.p99Ms.toFixed(2).padStart(6)} ms ${sample.loadAvg.toFixed(1).padStart(5)}`,
  );
}

/** Prints the summary and every rule; returns whether all held. */
export function printSummary(samples: readonly Sample[], final: LoadStats, logCounts: ReadonlyMap<string, number>, rules: readonly Rule[]): boolean {
  const range = (of: (s: Sample) => number, digits: number) => `${Math.min(...samples.map(of)).toFixed(digits)}/${Math.max(...samples.map(of)).toFixed(digits)}`;
  const allLatencies = samples.map((s) => s.p99Ms);
  console.log("\nsummary");
  console.log(`  duration ${(samples.at(-1)?.elapsedS ?? 0).toFixed(0)} s, ${samples.length} samples, ${totalOps(final)} load calls (${Object.entries(final.ok).map(([k, v]) => `${k} ${v}`).join(", ")})`);
  console.log(`  expected refusals: ${Object.entries(final.errors).map(([k, v]) => `${k} ${v}`).join(", ") || "none"}`);
  console.log(`  watch events ${final.watchEvents}, slow watcher dropped ${final.slowWatcherDrops} times (kept ${final.slowWatcherKept}), reservations leaked to expiry ${final.leakedReservations}, double releases answered ALREADY_RELEASED ${final.releasedTwice}`);
  console.log(`  RSS min/max ${range((s) => s.rssMiB, 1)} MiB, heap min/max ${range((s) => s.heapMiB, 1)} MiB, fds min/max ${Math.min(...samples.map((s) => s.openFds))}/${Math.max(...samples.map((s) => s.openFds))}`);
  console.log(`  probe window p99 min/median/max ${Math.min(...allLatencies).toFixed(2)}/${median(allLatencies).toFixed(2)}/${Math.max(...allLatencies).toFixed(2)} ms`);
  console.log(`  machine load average min/median/max ${Math.min(...samples.map((s) => s.loadAvg)).toFixed(1)}/${median(samples.map((s) => s.loadAvg)).toFixed(1)}/${Math.max(...samples.map((s) => s.loadAvg)).toFixed(1)} on ${os.cpus().length} cores`);
  console.log(`  server warnings: ${[...logCounts].map(([k, v]) => `${k} x${v}`).join("; ") || "none"}`);
  for (const rule of rules) console.log(`  ${rule.ok ? "PASS" : "FAIL"} ${rule.name}: ${rule.detail}`);
  const passed = rules.every((rule) => rule.ok);
  console.log(passed ? "soak passed" : "soak FAILED");
  return passed;
}
