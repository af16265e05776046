/** What the replicas asked of PostgreSQL in a window, per second: pure arithmetic on two readings of its statistics. */
import type { DatabaseCounters, StatementCount } from "./replica-database.js";
import type { StatementRate, StatementRates } from "./results.js";

/** The heartbeat batch write (UPDATE … SET last_heartbeat_at_ms) and the read of others' heartbeats (WHERE last_heartbeat_at_ms >). */
const HEARTBEAT_STATEMENT = /SET\s+last_heartbeat_at_ms\s*=|WHERE\s+last_heartbeat_at_ms\s*>/i;
const TOP = 8;
const TOP_BY_ROWS = 3;
const STATEMENT_CHARS = 90;

export interface StatementWindow {
  /** pg_stat_statements at the end of a window that began with its reset; undefined without the extension. */
  readonly statements: readonly StatementCount[] | undefined;
  readonly before: DatabaseCounters;
  readonly after: DatabaseCounters;
  readonly seconds: number;
  /** The database user of each replica, in replica order. */
  readonly roles: readonly string[];
  /** Samples of the replicas' sessions that were not idle: count by state and wait. */
  readonly sessionSamples: readonly ReadonlyMap<string, number>[];
}

/** Sessions by state and wait, on average over the samples, most first. */
function averageSessions(samples: readonly ReadonlyMap<string, number>[]): StatementRates["sessions"] {
  const totals = new Map<string, number>();
  for (const sample of samples) for (const [state, n] of sample) totals.set(state, (totals.get(state) ?? 0) + n);
  return [...totals.entries()].map(([state, n]) => ({ state, average: n / Math.max(1, samples.length) })).sort((a, b) => b.average - a.average);
}

/** One line of SQL, shortened: how a statement shows in a table. */
export function statementText(query: string): string {
  const line = query.replace(/\s+/g, " ").trim();
  return line.length > STATEMENT_CHARS ? `${line.slice(0, STATEMENT_CHARS - 1)}…` : line;
}

/** The window's rates; statements of users other than the replicas' (the suite's own readings) are left out. */
export function statementRates(window: StatementWindow): StatementRates {
  const { seconds, roles, before, after } = window;
  const database = Object.fromEntries(Object.keys(after).map((key) => [key, (after[key as keyof DatabaseCounters] - before[key as keyof DatabaseCounters]) / seconds])) as Record<
    keyof DatabaseCounters,
    number
  >;
  if (window.statements === undefined) {
    return {
      source: "pg_stat_database",
      perSecond: database.commits + database.rollbacks,
      perReplica: [],
      heartbeatPerReplica: undefined,
      top: [],
      sessions: averageSessions(window.sessionSamples),
      database,
    };
  }
  const ours = window.statements.filter((s) => roles.includes(s.role));
  const calls = (rows: readonly StatementCount[]) => rows.reduce((sum, s) => sum + s.calls, 0);
  const byText = new Map<string, { calls: number; rows: number }>();
  for (const s of ours) {
    const text = statementText(s.query);
    const entry = byText.get(text) ?? { calls: 0, rows: 0 };
    entry.calls += s.calls;
    entry.rows += s.rows;
    byText.set(text, entry);
  }
  // The most called, and the ones that move the most rows (a statement called once a second may read the whole fleet).
  const entries = [...byText.entries()];
  const mostCalled = [...entries].sort((a, b) => b[1].calls - a[1].calls).slice(0, TOP);
  const mostRows = [...entries].sort((a, b) => b[1].rows - a[1].rows).slice(0, TOP_BY_ROWS);
  const top: StatementRate[] = [...new Map([...mostCalled, ...mostRows]).entries()]
    .sort((a, b) => b[1].calls - a[1].calls)
    .map(([statement, { calls: n, rows }]) => ({ statement, perSecond: n / seconds, rowsPerSecond: rows / seconds }));
  return {
    source: "pg_stat_statements",
    perSecond: calls(ours) / seconds,
    perReplica: roles.map((role) => ({ replica: role, perSecond: calls(ours.filter((s) => s.role === role)) / seconds })),
    heartbeatPerReplica: calls(ours.filter((s) => HEARTBEAT_STATEMENT.test(s.query))) / seconds / roles.length,
    top,
    sessions: averageSessions(window.sessionSamples),
    database,
  };
}
