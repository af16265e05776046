/**
 * Replicas: three registry processes on one PostgreSQL, durable (fsync and
 * synchronous commit on), under what a fleet and its orchestrators do at
 * once: paced heartbeat streams (one beat per second each) spread over the
 * replicas, and AcquireWorker + ReleaseWorker kept in flight by several
 * orchestrators, one connection each, spread over the replicas too. The same
 * load first runs against one registry on SQLite, in the same run, for the
 * figures beside them.
 *
 * Measured in one window: heartbeat acks and their latency, acquisitions per
 * second, CPU of every process, the replication lag two ways (what each
 * replica reports in GetRegistryStats, and a write answered by one replica
 * until another finds it), the statements per second PostgreSQL ran
 * (pg_stat_statements, by replica: each connects as its own database user;
 * pg_stat_database without the extension), and, once the load stops, whether
 * the replicas agree on the revision and the fleet.
 */
import path from "node:path";
import type { LoadGenerator } from "../load-generator.js";
import type { Target } from "../loadgen-protocol.js";
import { machineBusySeconds } from "../measure-window.js";
import { cpuSeconds, rssMiB, runQueueWaitSeconds, sleep } from "../proc.js";
import { fmt, fx, log, pct } from "../progress.js";
import { BenchDatabase, replicaRole } from "../replica-database.js";
import { lagSummary, ReplicaProbes, sampleReplication, type ReplicationSamples } from "../replica-probes.js";
import type { ReplicaRun } from "../results.js";
import { removeDatabase, seedDatabase } from "../seed.js";
import type { ServerProcess } from "../servers.js";
import { statementRates } from "../statement-rates.js";
import { openPacedFleet } from "./paced-fleet.js";
import type { ScenarioContext } from "./scenario-context.js";

const REPLICAS = 3;
/** How long the replicas may take to agree once the writes stop. */
const CONVERGE_TIMEOUT_MS = 5000;

/** What {@link measureReplicas} gives the results: the SQLite run and the PostgreSQL run, or why there are none. */
export interface ReplicaScenarioResult {
  readonly runs: ReplicaRun[];
  readonly skipped: string | undefined;
}

/** One registry on SQLite, then {@link REPLICAS} replicas on a fresh PostgreSQL cluster, under the same load. */
export async function measureReplicas(context: ScenarioContext): Promise<ReplicaScenarioResult> {
  if (!BenchDatabase.available()) {
    const skipped = "PostgreSQL's server binaries were not found (apt-get install postgresql)";
    log(`replicas: skipped, ${skipped}`);
    return { runs: [], skipped };
  }
  const { mode, workDir, servers } = context;
  const dbPath = path.join(workDir, "replicas-sqlite.db");
  log(`replicas: seeded ${fmt(mode.replicaStreams)} workers in SQLite in ${seedDatabase(dbPath, mode.replicaStreams).toFixed(2)} s`);
  const sqlite = [await servers.registry({ dbPath, label: "replicas-sqlite", profile: "replicas-sqlite" })];
  const runs = [await underLoad(context, "sqlite", sqlite, undefined)];
  for (const server of sqlite) await servers.stop(server);
  removeDatabase(dbPath);

  const database = await BenchDatabase.start(REPLICAS);
  try {
    log(
      `replicas: PostgreSQL cluster up (fsync on, synchronous_commit on; ${database.hasStatements ? "pg_stat_statements" : "no pg_stat_statements: pg_stat_database only"}); ` +
        `seeded ${fmt(mode.replicaStreams)} workers in ${(await database.seed(mode.replicaStreams)).toFixed(2)} s`,
    );
    const replicas = await Promise.all(
      Array.from({ length: REPLICAS }, (_, i) =>
        servers.registry({ dbPath: database.replicaUrl(i), label: `replica-${i}`, profile: `replica-${i}`, flags: { "replica-id": `replica-${i}` } }),
      ),
    );
    try {
      runs.push(await underLoad(context, "postgres", replicas, database));
    } finally {
      for (const server of replicas) await servers.stop(server);
    }
  } finally {
    await database.destroy();
  }
  return { runs, skipped: undefined };
}

/** The streams, then the orchestrators, then the window: everything measured while both run. */
async function underLoad(context: ScenarioContext, store: ReplicaRun["store"], servers: ServerProcess[], database: BenchDatabase | undefined): Promise<ReplicaRun> {
  const { mode, loadGenerators } = context;
  const target: Target = { kind: "registry", address: servers[0]!.address, addresses: servers.map((s) => s.address) };
  const probes = new ReplicaProbes(target.addresses!);
  try {
    return await loadGenerators.use(async (fleet) => {
      const { settled, settleSeconds } = await openPacedFleet(fleet, target, mode.replicaStreams, mode.replicaWarmupSeconds);
      return loadGenerators.use(async (orchestrators) => {
        const { concurrency, connections } = mode.replicaLoad;
        await orchestrators.request(
          { type: "start-unary", client: orchestrators.client, target, op: "AcquireRelease", concurrency, connections, workerCount: mode.replicaStreams },
          "started",
        );
        await sleep(1000);
        const window = await measure(context, servers, database, probes, fleet, orchestrators);
        const acquired = await orchestrators.request({ type: "stop", drainMs: 15_000 }, "stopped");
        const converged = servers.length > 1 ? await convergence(probes) : undefined;
        const beats = await fleet.request({ type: "stop", drainMs: 3000 }, "stopped");
        const run: ReplicaRun = {
          store,
          replicas: servers.length,
          streams: mode.replicaStreams,
          seconds: window.seconds,
          heartbeats: {
            acksPerSecond: window.heartbeats.completed / window.heartbeats.seconds,
            latency: window.heartbeats.latency,
            sent: beats.sent,
            missed: beats.missed,
            served: beats.served,
            opened: beats.opened,
            errors: beats.errors,
            firstError: beats.firstError,
            settled,
            settleSeconds,
          },
          acquisitions: {
            perSecond: window.acquisitions.completed / window.acquisitions.seconds,
            latency: window.acquisitions.latency,
            orchestrators: connections,
            inFlight: concurrency,
            errors: acquired.errors,
            firstError: acquired.firstError,
          },
          cpu: window.cpu,
          rssPeakMiB: window.rssPeakMiB,
          leader: window.leader,
          lag:
            window.samples === undefined
              ? undefined
              : { reported: lagSummary(window.samples.reported), probed: { ...lagSummary(window.samples.probed), failed: window.samples.failed } },
          statements: window.statements,
          converged,
        };
        logRun(run);
        return run;
      });
    });
  } finally {
    probes.close();
  }
}

/** One window with both loads running: the generators' reports, CPU, RSS, the replicas' lag and the database's statements. */
async function measure(
  context: ScenarioContext,
  servers: ServerProcess[],
  database: BenchDatabase | undefined,
  probes: ReplicaProbes,
  fleet: LoadGenerator,
  orchestrators: LoadGenerator,
) {
  const durationMs = context.mode.replicaSeconds * 1000;
  const countersBefore = await database?.counters();
  await database?.resetStatements();
  await fleet.request({ type: "reset" }, "reset");
  await orchestrators.request({ type: "reset" }, "reset");
  const generatorPids = [fleet.pid, orchestrators.pid];
  const waitingBefore = servers.map((s) => runQueueWaitSeconds(s.pid));
  const before = { cpu: cpuOf([...servers.map((s) => s.pid), ...generatorPids, ...(database?.pids() ?? [])]), busy: machineBusySeconds(), self: process.cpuUsage(), atMs: performance.now() };
  const rssPeakMiB = servers.map((s) => rssMiB(s.pid));
  const rssSampling = (async () => {
    for (const until = performance.now() + durationMs; performance.now() < until; await sleep(500)) servers.forEach((s, i) => (rssPeakMiB[i] = Math.max(rssPeakMiB[i]!, rssMiB(s.pid))));
  })();
  const roles = servers.map((_, i) => replicaRole(i));
  const sessionSamples: Map<string, number>[] = [];
  const sessionSampling = (async () => {
    if (database === undefined) return;
    for (const until = performance.now() + durationMs; performance.now() < until; await sleep(100)) sessionSamples.push(await database.sessionStates(roles));
  })();
  // One replica has nobody to lag behind: its window is only waited out.
  const samples: ReplicationSamples | undefined = servers.length > 1 ? await sampleReplication(probes, durationMs) : await sleep(durationMs).then(() => undefined);
  await rssSampling;
  await sessionSampling;
  const heartbeats = await fleet.request({ type: "report" }, "report");
  const acquisitions = await orchestrators.request({ type: "report" }, "report");
  const databasePids = database?.pids() ?? [];
  const after = { cpu: cpuOf([...servers.map((s) => s.pid), ...generatorPids, ...databasePids]), busy: machineBusySeconds(), self: process.cpuUsage(before.self), atMs: performance.now() };
  const seconds = (after.atMs - before.atMs) / 1000;
  const replicasWaiting = servers.map((s, i) => (runQueueWaitSeconds(s.pid) - waitingBefore[i]!) / seconds);
  const statements = await database?.statements();
  const countersAfter = await database?.counters();
  // A process that started in the window counts from its start; one that ended in it is lost (the pool keeps its connections).
  const cores = (pids: readonly number[]) => pids.reduce((sum, pid) => sum + ((after.cpu.get(pid) ?? 0) - (before.cpu.get(pid) ?? 0)), 0) / seconds;
  const replicaCores = servers.map((s) => cores([s.pid]));
  const generatorCores = cores(generatorPids);
  const databaseCores = database === undefined ? undefined : cores(databasePids);
  const selfCores = (after.self.user + after.self.system) / 1e6 / seconds;
  const other = Math.max(0, (after.busy - before.busy) / seconds - replicaCores.reduce((a, b) => a + b, 0) - generatorCores - (databaseCores ?? 0) - selfCores);
  const leader = (await probes.allStats()).find((s) => s.leading)?.replicaId ?? "";
  return {
    seconds,
    heartbeats,
    acquisitions,
    samples,
    leader,
    rssPeakMiB,
    cpu: { replicas: replicaCores, replicasWaiting, database: databaseCores, loadGenerators: generatorCores, other },
    statements:
      database === undefined || countersBefore === undefined || countersAfter === undefined
        ? undefined
        : statementRates({
            statements: database.hasStatements ? statements : undefined,
            before: countersBefore,
            after: countersAfter,
            seconds,
            roles,
            sessionSamples,
          }),
  };
}

/** Once the writes stopped: polls every replica until they report the same revision and fleet (5 s at most). */
async function convergence(probes: ReplicaProbes): Promise<NonNullable<ReplicaRun["converged"]>> {
  const started = performance.now();
  for (;;) {
    const stats = await probes.allStats();
    const revisions = stats.map((s) => s.revision);
    const workers = stats.map((s) => s.workers);
    const agree = revisions.every((r) => r === revisions[0]) && workers.every((w) => w === workers[0]);
    if (agree || performance.now() - started > CONVERGE_TIMEOUT_MS) return { revisions, workers, afterMs: performance.now() - started };
    await sleep(20);
  }
}

/** CPU seconds of each process still running. */
function cpuOf(pids: readonly number[]): Map<number, number> {
  const seconds = new Map<number, number>();
  for (const pid of pids) {
    try {
      seconds.set(pid, cpuSeconds(pid));
    } catch {
      // exited meanwhile
    }
  }
  return seconds;
}

function logRun(run: ReplicaRun): void {
  const { heartbeats: hb, acquisitions: acq, cpu, lag, statements } = run;
  log(
    `replicas: ${run.replicas} on ${run.store}, ${fmt(run.streams)} streams: ${fmt(hb.acksPerSecond)} acks/s (missed ${hb.missed} of ${fmt(hb.sent)}, p99 ${fx(hb.latency.p99Ms)} ms), ` +
      `${fmt(acq.perSecond)} acquisitions/s (p50 ${fx(acq.latency.p50Ms)} ms, p99 ${fx(acq.latency.p99Ms)} ms${acq.errors > 0 ? `, ${acq.errors} errors, first: ${acq.firstError}` : ""}); ` +
      `CPU: registries ${cpu.replicas.map((c) => fx(c)).join(" + ")} (waited for a CPU ${cpu.replicasWaiting.map((w) => pct(w)).join(", ")})${cpu.database === undefined ? "" : `, PostgreSQL ${fx(cpu.database)}`}, load generators ${fx(cpu.loadGenerators)}, other ${fx(cpu.other)}` +
      (lag ? `; lag reported p50 ${fx(lag.reported.p50Ms, 0)} / max ${fx(lag.reported.maxMs, 0)} ms, write→read p50 ${fx(lag.probed.p50Ms, 1)} / max ${fx(lag.probed.maxMs, 1)} ms (${lag.probed.samples} probes, ${lag.probed.failed} failed)` : "") +
      (statements
        ? `; ${fmt(statements.perSecond)} statements/s (${statements.perReplica.map((r) => `${r.replica} ${fmt(r.perSecond)}`).join(", ")}; heartbeat ${fx(statements.heartbeatPerReplica, 1)} per replica), ${fmt(statements.database.commits)} commits/s`
        : "") +
      (run.converged ? `; revisions once writes stopped ${run.converged.revisions.join("/")} after ${fmt(run.converged.afterMs)} ms` : "") +
      (run.leader ? `; leader ${run.leader}` : ""),
  );
}
