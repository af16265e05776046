import type { Clock } from "./clock.js";
import type { Fleet } from "./fleet.js";
import type { HealthSchedule } from "./health-schedule.js";
import type { Liveness } from "./liveness.js";
import { loadSnapshot } from "./recovery.js";
import type { CompiledRegistryOptions } from "./registry-options.js";
import type { RegistryStore } from "./registry-store.js";
import type { ReservationBook } from "./reservation-book.js";
import { watcherEvent, type Watches } from "./watches.js";
import type { CommittedEvent } from "./worker-events.js";

/** What one process knows of the registry, kept in step with the log: every part an event changes. */
export interface ReadModel {
  readonly fleet: Fleet;
  readonly book: ReservationBook;
  readonly schedule: HealthSchedule;
  readonly watches: Watches;
  readonly liveness: Liveness;
}

/**
 * Applies one committed event, of this process or another, in revision order:
 * the fleet and its indexes, the reservations, the health schedule, then the
 * watchers.
 */
export function applyToReadModel(model: ReadModel, event: CommittedEvent, clock: Clock): void {
  const nowMono = clock.monotonic();
  const { before, after } = model.fleet.apply(event, nowMono, clock.now());
  model.book.apply(event, nowMono, clock.now());
  if (after === undefined) {
    if (before !== undefined) model.schedule.forget(before);
  } else {
    model.schedule.track(after, nowMono);
    // A downgrade judged on a heartbeat older than one this process knows of: heal again.
    if (event.type === "health_changed" && event.heardUntilMs !== undefined && after.lastHeartbeatAtMs > event.heardUntilMs) {
      model.liveness.reheal(after);
    }
  }
  model.watches.publish(watcherEvent(event));
}

/** The log no longer holds what this process missed: start over from a fresh snapshot. Resolves to its revision. */
export async function reloadReadModel(model: ReadModel, store: RegistryStore, options: CompiledRegistryOptions, clock: Clock): Promise<number> {
  const snapshot = await store.load();
  model.fleet.clear();
  model.book.clear();
  model.schedule.clear();
  loadSnapshot(snapshot, { fleet: model.fleet, book: model.book }, options, { mono: clock.monotonic(), ms: clock.now(), shared: true });
  model.schedule.trackAll(clock.monotonic());
  model.watches.compactedTo(snapshot.compactedRevision);
  return snapshot.revision;
}
