/**
 * The soak's driver role: starts the server, the probe and the load
 * process, samples until the time is up, stops them in order, and judges.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { endRules, integrityCheck, judge } from "./checks.js";
import { startLoadProcess, type LoadProcess } from "./load-process.js";
import { startProbe } from "./probe.js";
import { sampleFor } from "./sampler.js";
import { printSummary } from "./soak-report.js";
import { startSoakServer, type SoakServer } from "./soak-server.js";

export interface DriveOptions {
  readonly minutes: number;
  readonly intervalS: number;
  readonly workers: number;
  /** Where to write the samples, final counters, rules and verdict as JSON. */
  readonly json: string | undefined;
  /** Keep the temporary directory (the database). */
  readonly keep: boolean;
}

/** Runs the soak; returns the exit code: 0 only if every rule held. `entry` is the script to fork with `--role load`. */
export async function drive(options: DriveOptions, entry: string): Promise<number> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "registry-soak-"));
  let server: SoakServer | undefined;
  let load: LoadProcess | undefined;
  try {
    server = await startSoakServer(dir);
    await server.serving();
    const probe = await startProbe(server.address);
    load = await startLoadProcess(entry, server.address, options.workers);
    console.log(`soak: ${options.minutes} min against ${server.address} (pid ${server.pid}, metrics :${server.metricsPort}), ${options.workers} worker nodes, db ${server.dbPath}`);
    const samples = await sampleFor(options, server, load, probe);

    await probe.stop();
    const final = await load.stop();
    await probe.close();
    const exit = await server.terminate();
    const rules = [...judge(samples), ...endRules({ final, probeFailures: probe.failures, exit, integrity: integrityCheck(server.dbPath) })];
    const passed = printSummary(samples, final, server.logCounts, rules);
    if (options.json !== undefined) {
      fs.writeFileSync(options.json, JSON.stringify({ options, samples, final, rules, logCounts: Object.fromEntries(server.logCounts), passed }, null, 2));
    }
    return passed ? 0 : 1;
  } finally {
    load?.kill();
    server?.kill();
    if (!options.keep) fs.rmSync(dir, { recursive: true, force: true });
  }
}
