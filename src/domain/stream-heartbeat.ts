import type { LiveWorker } from "./fleet.js";
import type { HealthStatus } from "./health.js";

/**
 * The ack of one heartbeat stream, filled again by each of its heartbeats
 * (WorkerRegistry.streamHeartbeat): a heartbeat on a stream then allocates
 * nothing here, and finds its worker without a lookup by id for as long as
 * the fleet holds the same record. Owned by one stream; read it before the
 * stream's next heartbeat.
 */
export class StreamHeartbeat {
  healthStatus: HealthStatus = "healthy";
  nextHeartbeatIntervalMs = 0;
  /** The wall-clock time recorded for the last heartbeat: what last_heartbeat_at shows. */
  heartbeatAtMs = 0;
  /** While the worker drains: when it is removed whatever it still runs (wall-clock ms); else null. */
  drainDeadlineMs: number | null = null;
  /** The record the last heartbeat went to; checked against the fleet at every heartbeat. */
  worker: LiveWorker | undefined = undefined;

  constructor(readonly workerId: string) {}

  /** Fills the ack for a heartbeat `worker` has just been credited with. */
  heard(worker: LiveWorker, nextHeartbeatIntervalMs: number): void {
    this.worker = worker;
    this.healthStatus = "healthy";
    this.nextHeartbeatIntervalMs = nextHeartbeatIntervalMs;
    this.heartbeatAtMs = worker.lastHeartbeatAtMs;
    this.drainDeadlineMs = worker.drainDeadlineMs;
  }
}
