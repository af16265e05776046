import type { CommittedEvent } from "../../src/domain/worker-events.js";
import type { WorkerRecord } from "../../src/domain/worker-record.js";

/** A stored worker record with neutral defaults; `overrides` set what a test is about. */
export function workerRecord(overrides: Partial<WorkerRecord> & { readonly id: string }): WorkerRecord {
  return {
    nodeId: `node-of-${overrides.id}`,
    capabilities: ["coder"],
    maxConcurrentTasks: 4,
    currentTasks: 0,
    tasksCompleted: 0,
    tasksFailed: 0,
    totalTaskDurationMs: 0,
    registeredAtMs: Date.UTC(2026, 0, 1),
    lastHeartbeatAtMs: Date.UTC(2026, 0, 1),
    health: "healthy",
    tokenHash: "",
    registeredBy: null,
    labels: {},
    version: "",
    state: "active",
    drainDeadlineMs: null,
    ...overrides,
  };
}

/** Numbers committed events in order, as a store would: revisions 1, 2, 3, … */
export function eventLog(startRevision = 0): (event: Omit<CommittedEvent, "revision" | "occurredAtMs"> & { occurredAtMs?: number }) => CommittedEvent {
  let revision = startRevision;
  return (event) => ({ occurredAtMs: event.worker.lastHeartbeatAtMs, ...event, revision: ++revision });
}
