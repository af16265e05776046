// @ts-check
// What the page knows of the fleet, and how each message of the feed changes it. No DOM here: applying a message
// only marks what must be drawn again (`dirty`); rendering draws it on the next animation frame.
//
// The page ranks nothing: the top performers are the ids the server sends with every message, in the registry's
// order, and each worker's priority is the one the server computed.

/** @import { DashboardEvent, DashboardStats, DashboardThresholds, DashboardWorker, EventsMessage, SnapshotMessage, TickMessage, TopPerformers, WorkerAction } from "../dashboard-messages.js" */
/** @import { HealthStatus } from "../../domain/health.js" */

/**
 * A worker as the page keeps it: the server's, updated in place by later
 * messages, and, once its health changed while the page was open, when and
 * from what (for the row's highlight).
 * @typedef {{ -readonly [K in keyof DashboardWorker]: DashboardWorker[K] } & { changedAtMs?: number, was?: HealthStatus }} PageWorker
 */

/**
 * One line of "recent changes".
 * @typedef {object} Change
 * @property {number} atMs  the server's wall clock when it happened
 * @property {string} id
 * @property {string} node
 * @property {HealthStatus | "joined" | "cordoned" | "uncordoned" | "draining" | `left${string}` | `removed${string}`} to  the new
 *   health, the new state, or what happened (`left (drained)`: with why, unless the worker unregistered itself)
 * @property {HealthStatus} [from]  for a health change, the health before
 */

/** @typedef {"id" | "node" | "version" | "labels" | "capabilities" | "state" | "health" | "tasks" | "success" | "duration" | "priority" | "heartbeat"} SortKey */

const RECENT_CHANGES = 8;

export const state = {
  /** @type {Map<string, PageWorker>} by id */
  workers: new Map(),
  /** @type {DashboardStats | undefined} undefined until the first snapshot */
  stats: undefined,
  /** @type {DashboardThresholds | undefined} */
  thresholds: undefined,
  revision: 0,
  /** @type {Map<string, number>} capability -> how many workers have it */
  capabilities: new Map(),
  /** @type {Change[]} newest first */
  changes: [],
  /** @type {TopPerformers} best first, as the server ranked them */
  topPerformers: [],
  /** @type {{ capability: string, health: HealthStatus | "" }} "" for all */
  filter: { capability: "", health: "" },
  /** @type {{ key: SortKey, descending: boolean }} */
  sort: { key: "health", descending: true },
  /** The server's wall clock at a moment of this page's monotonic clock: heartbeat ages are the server's. */
  clock: { serverMs: 0, atPerfMs: 0 },
  /** @type {ReadonlySet<WorkerAction>} what the operator's token may do to workers, as the registry said (actions.js) */
  actions: new Set(),
  /** @type {Set<string>} workers with an action in flight: their buttons wait */
  pending: new Set(),
};

/** What must be drawn again on the next frame. */
export const dirty = {
  /** The table's rows must be filtered and sorted again (at most every so often while messages stream in)... */
  view: true,
  /** ...or at once: after a snapshot, a click on a header or a filter. */
  viewNow: true,
  rows: true,
  summary: true,
  top: true,
  changes: true,
  capabilities: true,
  /** @type {Set<HealthStatus>} health cards to flash: a worker entered that health */
  bumped: new Set(),
};

/** Marks everything for drawing. */
export function markAll() {
  dirty.view = dirty.viewNow = dirty.rows = dirty.summary = dirty.top = dirty.changes = dirty.capabilities = true;
}

/** @param {number} serverTimeMs */
function setServerClock(serverTimeMs) {
  state.clock = { serverMs: serverTimeMs, atPerfMs: performance.now() };
}

/** The server's wall clock now, as well as this page can tell. */
export function serverNow() {
  return state.clock.serverMs + (performance.now() - state.clock.atPerfMs);
}

/** Replaces everything the page knew. @param {SnapshotMessage} message */
export function applySnapshot(message) {
  setServerClock(message.serverTimeMs);
  state.thresholds = message.thresholds;
  state.stats = message.stats;
  state.revision = message.revision;
  state.topPerformers = message.topPerformers;
  state.workers = new Map();
  state.capabilities = new Map();
  for (const worker of message.workers) addWorker(worker);
  markAll();
}

/** Applies watch events in order. @param {EventsMessage} message */
export function applyEvents(message) {
  for (const event of message.events) applyEvent(event);
  state.stats = message.stats;
  state.topPerformers = message.topPerformers;
  dirty.view = dirty.rows = dirty.summary = dirty.top = true;
}

/** @param {DashboardEvent} event */
function applyEvent(event) {
  state.revision = Math.max(state.revision, event.revision);
  const before = state.workers.get(event.worker.id);
  if (event.type === "unregistered" || event.type === "removed") {
    if (before !== undefined) removeWorker(before);
    recordChange(event, departure(event), undefined);
    return;
  }
  const next = event.worker;
  if (before === undefined) {
    if (event.type === "registered") recordChange(event, "joined", undefined);
    addWorker(next);
    return;
  }
  // Updated in place, so the rows in view show the change before the next re-sort.
  removeWorker(before);
  const wasHealth = before.health;
  const wasState = before.state;
  // Heartbeat times also arrive by tick; never go back in time.
  const lastHeartbeatAtMs = Math.max(next.lastHeartbeatAtMs, before.lastHeartbeatAtMs);
  Object.assign(before, next, { lastHeartbeatAtMs });
  if (wasHealth !== next.health) {
    before.changedAtMs = performance.now();
    before.was = wasHealth;
    recordChange(event, next.health, wasHealth);
    dirty.bumped.add(next.health);
  }
  if (wasState !== next.state) recordChange(event, next.state === "active" ? "uncordoned" : next.state, undefined);
  addWorker(before);
}

/**
 * How a departure reads in "recent changes": with its reason when the
 * worker did not leave by itself (`left (drained)`, `left (drain deadline)`).
 * @param {DashboardEvent} event
 * @returns {Change["to"]}
 */
function departure(event) {
  const reason = event.removalReason;
  if (event.type === "removed") return reason === undefined || reason === "expired" ? "removed (expired)" : `removed (${reason.replace(/_/g, " ")})`;
  return reason === undefined || reason === "unregistered" ? "left" : `left (${reason.replace(/_/g, " ")})`;
}

/** Heartbeat times that changed, the server's clock, the stats. @param {TickMessage} message */
export function applyTick(message) {
  setServerClock(message.serverTimeMs);
  for (const [id, atMs] of message.heartbeats) {
    const worker = state.workers.get(id);
    if (worker !== undefined && atMs > worker.lastHeartbeatAtMs) worker.lastHeartbeatAtMs = atMs;
  }
  state.stats = message.stats;
  if (!sameIds(state.topPerformers, message.topPerformers)) {
    state.topPerformers = message.topPerformers;
    dirty.top = true;
  }
  if (state.sort.key === "heartbeat") dirty.view = true;
  dirty.rows = dirty.summary = true;
}

/** @param {PageWorker} worker */
function addWorker(worker) {
  state.workers.set(worker.id, worker);
  for (const capability of worker.capabilities) {
    const count = state.capabilities.get(capability) ?? 0;
    state.capabilities.set(capability, count + 1);
    if (count === 0) dirty.capabilities = true;
  }
}

/** @param {PageWorker} worker */
function removeWorker(worker) {
  state.workers.delete(worker.id);
  for (const capability of worker.capabilities) {
    const count = (state.capabilities.get(capability) ?? 1) - 1;
    if (count === 0) {
      state.capabilities.delete(capability);
      dirty.capabilities = true;
    } else {
      state.capabilities.set(capability, count);
    }
  }
}

/**
 * @param {DashboardEvent} event
 * @param {Change["to"]} to
 * @param {HealthStatus | undefined} from
 */
function recordChange(event, to, from) {
  /** @type {Change} */
  const change = { atMs: event.occurredAtMs, id: event.worker.id, node: event.worker.nodeId, to };
  if (from !== undefined) change.from = from;
  state.changes.unshift(change);
  state.changes.length = Math.min(state.changes.length, RECENT_CHANGES);
  dirty.changes = true;
}

/** @param {readonly string[]} a @param {readonly string[]} b */
function sameIds(a, b) {
  return a.length === b.length && a.every((id, i) => id === b[i]);
}
