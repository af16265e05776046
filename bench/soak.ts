/**
 * The soak: a realistic mixed load against a registry server in its own
 * process, for as long as asked, watching the server's memory, handles and
 * latency for growth.
 *
 *   npm run soak -- [--minutes 5] [--interval-seconds 10] [--workers 100] [--json FILE] [--keep]
 *
 * Three processes: the server (`worker-registry serve`, on a temporary
 * database, with short thresholds and TTLs so that cleanup, reservation
 * expiry and event-log pruning all run many times), a load generator (this
 * file with `--role load`), and this one, which probes latency and samples.
 *
 * The load: `--workers` WorkerNode runtimes, each on its own channel,
 * heartbeating every second on a stream and running tasks (UpdateTaskCount
 * +1, RecordTaskCompletion, -1); churn (a node stops and unregisters, a new
 * one registers, twice a second); crashes (a worker registers, heartbeats
 * for a few seconds and vanishes without unregistering, left to cleanup);
 * orchestrators acquiring and releasing slots (some never released, left to
 * expire; some released twice); two watchers reading every event and
 * resuming from their last revision every minute, and one watcher that
 * never reads (the server, with a watch buffer of 1000 events, drops it with
 * RESOURCE_EXHAUSTED; it comes back 20 s later); fleet reads
 * (DiscoverWorkers, GetWorkersForLoadBalancing, GetRegistryStats).
 *
 * Every `--interval-seconds` it prints the server's RSS (/proc/<pid>/status),
 * V8 heap used and open file descriptors (from its metrics endpoint:
 * `nodejs_heap_size_used_bytes`, `process_open_fds`), its open streams and
 * workers, the load's throughput, and p50/p99 of a probe call (GetWorker,
 * 40 per second, on a channel of its own).
 *
 * The verdict (exit code 0 only if every rule holds), with the samples split
 * into thirds, the first being warm-up:
 * - memory flat: the last third's mean RSS and heap are within +20% (plus a
 *   small absolute slack, 16 MiB RSS / 8 MiB heap, for small numbers) of the
 *   middle third's;
 * - no handle growth: the last third's mean open fds within +20% + 8 of the
 *   middle third's;
 * - p99 stable: the median of the last third's window p99s within 2x + 5 ms
 *   of the middle third's (the machine is shared; a leak or a queue that
 *   grows shows as a trend far beyond that);
 * - no call failed with a status the load does not expect (INTERNAL,
 *   UNKNOWN, ...), no watcher saw revisions out of order, the probe never
 *   failed, the server exited 0 on SIGTERM and the database's
 *   integrity_check is ok.
 */
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { drive } from "./soak/driver.js";
import { runLoad } from "./soak/load.js";

// The parts: soak/load.ts and load-actors.ts (the load role); soak/driver.ts with
// soak-server.ts, probe.ts, load-process.ts and sampler.ts (the driver role);
// soak/checks.ts (the rules above, on the samples of sample.ts) and
// soak-report.ts (what is printed).

const { values } = parseArgs({
  options: {
    role: { type: "string", default: "drive" },
    address: { type: "string" },
    minutes: { type: "string", default: "5" },
    "interval-seconds": { type: "string", default: "10" },
    workers: { type: "string", default: "100" },
    json: { type: "string" },
    keep: { type: "boolean", default: false },
  },
  strict: true,
});
const number = (name: string, text: string | undefined): number => {
  const value = Number(text);
  if (!(value > 0)) throw new Error(`--${name} must be a number > 0, got ${JSON.stringify(text)}`);
  return value;
};

if (values.role === "load") {
  if (values.address === undefined) throw new Error("--address is required with --role load");
  await runLoad(values.address, number("workers", values.workers));
} else {
  process.exitCode = await drive(
    {
      minutes: number("minutes", values.minutes),
      intervalS: number("interval-seconds", values["interval-seconds"]),
      workers: Math.floor(number("workers", values.workers)),
      json: values.json,
      keep: values.keep,
    },
    fileURLToPath(import.meta.url),
  );
}
