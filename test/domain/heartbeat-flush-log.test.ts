import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import type { Logger } from "../../src/domain/logger.js";
import { SqliteStore } from "../../src/store/sqlite-store.js";
import { FakeClock } from "../support/fake-clock.js";
import { createTestRegistry } from "../support/registry-fixture.js";

/** A logger that keeps every line. */
function recordingLogger(): Logger & { lines: Array<{ level: string; message: string; fields: Record<string, unknown> }> } {
  const lines: Array<{ level: string; message: string; fields: Record<string, unknown> }> = [];
  const at = (level: string) => (fields: object, message: string) => void lines.push({ level, message, fields: fields as Record<string, unknown> });
  return { lines, debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
}

describe("heartbeat flush failures in the log", () => {
  // Regression test: "heartbeat flush failed" was logged at every flush, once a second, for as long as storage failed.
  it("logs the first failure, then at most one line a minute with how many failed, and the recovery once", async () => {
    const clock = new FakeClock();
    const log = recordingLogger();
    const db = new Database(":memory:");
    const { registry } = await createTestRegistry({}, { clock, log, store: new SqliteStore(db) });
    const worker = await registry.registerWorker({ nodeId: "beating", capabilities: ["cpu"], maxConcurrentTasks: 1 });
    const flushLines = () => log.lines.filter((line) => line.message.startsWith("heartbeat flush"));

    // Storage refuses writes for 150 s; the worker beats and the registry flushes once a second, as it does when serving.
    db.pragma("query_only = ON");
    for (let second = 0; second < 150; second++) {
      registry.heartbeat(worker.id);
      await registry.flushHeartbeats();
      clock.advance(1000);
    }

    expect(flushLines().map(({ level, message, fields }) => ({ level, message, failures: fields.failures }))).toEqual([
      { level: "warn", message: "heartbeat flush failed; will retry", failures: 1 },
      { level: "warn", message: "heartbeat flush failed; will retry", failures: 60 },
      { level: "warn", message: "heartbeat flush failed; will retry", failures: 60 },
    ]);
    expect(flushLines().every(({ fields }) => fields.err !== undefined && fields.pending === 1)).toBe(true);
    expect(flushLines()[2]!.fields.failingForMs).toBe(120_000);

    db.pragma("query_only = OFF");
    for (let second = 0; second < 5; second++) {
      registry.heartbeat(worker.id);
      await registry.flushHeartbeats();
      clock.advance(1000);
    }
    expect(flushLines().slice(3).map(({ level, message, fields }) => ({ level, message, failures: fields.failures, failedForMs: fields.failedForMs }))).toEqual([
      { level: "info", message: "heartbeat flush recovered", failures: 150, failedForMs: 150_000 },
    ]);
    await registry.close();
  });
});
