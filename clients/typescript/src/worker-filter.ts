import type { FilterInit } from "./registry-calls.js";
import { healthValue, type WorkerQuery } from "./worker-info.js";
import type { WorkerWatchQuery } from "./worker-watch.js";

/**
 * The one translation of the client's queries into the contract's
 * WorkerFilter, for every call that takes one (discovery, load balancing,
 * acquisition, watches). The label selector goes to the registry as it is:
 * the registry parses it and names the position of a syntax error.
 */

/**
 * The WorkerFilter of a query.
 *
 * @throws RangeError for an unknown health name.
 */
export function filterOf(query: WorkerQuery): FilterInit {
  return {
    capabilities: [...(query.capabilities ?? [])],
    healthStatuses: (query.healthStatus ?? []).map(healthValue),
    minAvailableCapacity: query.minAvailableCapacity ?? 0,
    labelSelector: query.labelSelector ?? "",
    versions: [...(query.versions ?? [])],
  };
}

/**
 * The WorkerFilter of a watch query.
 *
 * @throws RangeError for an unknown health name, or a `minAvailableCapacity`
 *   (plain JavaScript callers can pass one), which a watch cannot honour: it
 *   changes with nearly every event.
 */
export function watchFilterOf(query: WorkerWatchQuery): FilterInit {
  const capacity = (query as WorkerQuery).minAvailableCapacity;
  if (capacity !== undefined && capacity !== 0) {
    throw new RangeError(`watchWorkers cannot filter on minAvailableCapacity (it changes with nearly every event), got ${capacity}`);
  }
  return filterOf({
    capabilities: query.capabilities,
    healthStatus: query.healthStatus,
    labelSelector: query.labelSelector,
    versions: query.versions,
  });
}
