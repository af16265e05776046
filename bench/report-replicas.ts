/**
 * The replica scenario's tables (bench/scenarios/replicas.ts): the
 * PostgreSQL replicas beside the single SQLite registry of the same run, the
 * statements PostgreSQL ran, and the scenario's targets. Reads results only.
 */
import { cores, int, ms, pct, ratio, table } from "./report-format.js";
import type { LagSummary, ReplicaRun, Results } from "./results.js";
import { replicaVerdicts, verdictText } from "./verdicts.js";

const lag = (x: LagSummary | undefined) => (x === undefined || x.samples === 0 ? "—" : `${ms(x.p50Ms, 1)} / ${ms(x.p99Ms, 1)} / ${ms(x.maxMs, 1)} (${int(x.samples)} samples)`);
const perSecond = (n: number | undefined, digits = 0) => (n === undefined || !Number.isFinite(n) ? "—" : digits === 0 ? int(n) : n.toFixed(digits));

function comparisonTable(sqlite: ReplicaRun | undefined, pg: ReplicaRun): string {
  const both = (label: string, show: (x: ReplicaRun) => string, compare?: (x: ReplicaRun) => number) => [
    label,
    sqlite ? show(sqlite) : "—",
    show(pg),
    compare && sqlite ? ratio(compare(pg), compare(sqlite)) : "",
  ];
  const onlyPg = (label: string, value: string) => [label, "— (one process)", value, ""];
  const s = pg.statements;
  const db = s?.database;
  const rows: string[][] = [
    both("AcquireWorker + ReleaseWorker pairs per second", (x) => int(x.acquisitions.perSecond), (x) => x.acquisitions.perSecond),
    both("acquisition p50 / p99 ms (acquire and release)", (x) => `${ms(x.acquisitions.latency.p50Ms)} / ${ms(x.acquisitions.latency.p99Ms)}`),
    both("acquisition errors", (x) => (x.acquisitions.errors === 0 ? "0" : `${int(x.acquisitions.errors)}: ${x.acquisitions.firstError}`)),
    both("heartbeat acks per second", (x) => int(x.heartbeats.acksPerSecond), (x) => x.heartbeats.acksPerSecond),
    both("heartbeat ack p50 / p99 / max ms", (x) => `${ms(x.heartbeats.latency.p50Ms)} / ${ms(x.heartbeats.latency.p99Ms)} / ${ms(x.heartbeats.latency.maxMs, 1)}`),
    both("heartbeats missed (whole run)", (x) => `${int(x.heartbeats.missed)} of ${int(x.heartbeats.sent)}`),
    both("streams served", (x) => (x.heartbeats.served === x.heartbeats.opened ? `✓ ${int(x.heartbeats.opened)}` : `✗ ${int(x.heartbeats.served)}/${int(x.heartbeats.opened)}`)),
    onlyPg("replication lag as the replicas report it (GetRegistryStats; counted from the write's start, so it includes the writer's own transaction), p50 / p99 / max ms", lag(pg.lag?.reported)),
    onlyPg(
      "a write answered by one replica until another finds it, p50 / p99 / max ms",
      pg.lag ? `${lag(pg.lag.probed)}${pg.lag.probed.failed > 0 ? `, ${pg.lag.probed.failed} not seen within 5 s` : ""}` : "—",
    ),
    onlyPg(
      s?.source === "pg_stat_database" ? "database transactions per second (pg_stat_database)" : "database statements per second, all replicas (pg_stat_statements)",
      perSecond(s?.perSecond),
    ),
    onlyPg("database statements per second, per replica", s && s.perReplica.length > 0 ? s.perReplica.map((r) => `${r.replica} ${int(r.perSecond)}`).join(" · ") : "—"),
    onlyPg("heartbeat statements (batch write + read of others') per replica per second", perSecond(s?.heartbeatPerReplica, 1)),
    onlyPg(
      "the replicas' database sessions not idle, on average (pg_stat_activity every 100 ms): state · wait",
      s && s.sessions.length > 0 ? s.sessions.slice(0, 5).map((x) => `${x.state} ${x.average.toFixed(2)}`).join("; ") : "—",
    ),
    onlyPg("commits per second (pg_stat_database)", perSecond(db?.commits)),
    onlyPg(
      "rows per second returned / fetched / updated / inserted / deleted (pg_stat_database)",
      db ? [db.returned, db.fetched, db.updated, db.inserted, db.deleted].map((n) => int(n)).join(" / ") : "—",
    ),
    both("registry CPU, cores (each process)", (x) => x.cpu.replicas.map((c) => cores(c)).join(" + "), (x) => x.cpu.replicas.reduce((a, b) => a + b, 0)),
    both("registry event loop waited for a CPU, share of the window (each process)", (x) => (x.cpu.replicasWaiting ?? []).map((w) => pct(w)).join(" + ") || "—"),
    onlyPg("PostgreSQL CPU, cores (every server process)", cores(pg.cpu.database)),
    both("load generators CPU, cores / other load, cores", (x) => `${cores(x.cpu.loadGenerators)} / ${cores(x.cpu.other)}`),
    both("registry RSS peak, MiB (each process)", (x) => x.rssPeakMiB.map((m) => int(m)).join(" + ")),
    both("leader at the end of the window", (x) => x.leader || "—"),
    onlyPg(
      "once the load stopped: applied revision / workers on each replica",
      pg.converged ? `${pg.converged.revisions.map(int).join(" / ")} · ${pg.converged.workers.map(int).join(" / ")} (after ${int(pg.converged.afterMs)} ms)` : "—",
    ),
  ];
  return table(["", sqlite ? `1 registry on SQLite` : "SQLite: not run", `${pg.replicas} replicas on PostgreSQL`, "PostgreSQL ÷ SQLite"], rows);
}

function statementTable(pg: ReplicaRun): string {
  const top = pg.statements?.top ?? [];
  return table(
    ["statement (normalised by pg_stat_statements)", "calls per second", "per replica", "rows per second"],
    top.map((t) => [`\`${t.statement.replaceAll("|", "\\|")}\``, t.perSecond.toFixed(1), (t.perSecond / pg.replicas).toFixed(1), t.rowsPerSecond.toFixed(0)]),
  );
}

/** The scenario's section as Markdown (also what the console shows), or "" when it did not run. */
export function renderReplicaTables(r: Results): string {
  const runs = r.replicas ?? [];
  const pg = runs.find((x) => x.store === "postgres");
  if (pg === undefined) return r.replicasSkipped ? `#### Replicas\n\nNot measured: ${r.replicasSkipped}.` : "";
  const sqlite = runs.find((x) => x.store === "sqlite");
  const { orchestrators, inFlight } = pg.acquisitions;
  const parts = [
    "#### Targets: replicas",
    "",
    table(["target", "measured", "verdict"], replicaVerdicts(r).map((v) => [v.target, v.measured, verdictText(v)])),
    "",
    `#### ${pg.replicas} replicas on one PostgreSQL (fsync on) beside 1 registry on SQLite: ${int(pg.streams)} heartbeat streams at 1/s spread over them, ` +
      `${orchestrators} orchestrators keeping ${inFlight} AcquireWorker + ReleaseWorker in flight, ${pg.seconds.toFixed(0)} s window`,
    "",
    comparisonTable(sqlite, pg),
  ];
  if (pg.statements?.source === "pg_stat_statements") {
    parts.push("", `#### What PostgreSQL ran for the ${pg.replicas} replicas: the statements called most, and those that moved the most rows`, "", statementTable(pg));
  }
  return parts.join("\n");
}
