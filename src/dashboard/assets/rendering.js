// @ts-check
// Drawing: state changes only mark what is dirty, and one requestAnimationFrame draws it: the counters and the
// capacity bar, the top performers, the recent changes, the capability filter's options and the table (table.js).

import { el, healthBadge, isHealthStatus, item, span } from "./elements.js";
import { formatCount, formatDuration, formatPercent, formatPriority } from "./formatting.js";
import { dirty, state } from "./state.js";
import { computeView, renderRows } from "./table.js";

/** @import { DashboardReplica } from "../dashboard-messages.js" */
/** @import { Connection } from "./feed.js" */
/** @import { PageWorker } from "./state.js" */

/**
 * Re-sorting 10,000 rows costs a few milliseconds: while messages stream in it
 * runs at most this often (rows in view still show each change at once, being
 * updated in place). A click on a header or a filter re-sorts at once.
 */
const VIEW_INTERVAL_MS = 200;
const BUMP_MS = 50;

let frameRequested = false;
let lastViewAtMs = -Infinity;
/** @type {ReturnType<typeof setTimeout> | undefined} */
let viewTimer;

/** Draws what is dirty on the next animation frame; calls before it are free. */
export function requestRender() {
  if (frameRequested) return;
  frameRequested = true;
  requestAnimationFrame(render);
}

function render() {
  frameRequested = false;
  if (dirty.capabilities) renderCapabilityOptions();
  if (dirty.view) {
    const waitMs = lastViewAtMs + VIEW_INTERVAL_MS - performance.now();
    if (dirty.viewNow || waitMs <= 0) {
      computeView();
      lastViewAtMs = performance.now();
      dirty.view = dirty.viewNow = false;
    } else {
      viewTimer ??= setTimeout(() => {
        viewTimer = undefined;
        requestRender();
      }, waitMs);
    }
  }
  if (dirty.bumped.size > 0) bumpHealthCards();
  if (dirty.summary) renderSummary();
  if (dirty.top) renderTop();
  if (dirty.changes) renderChanges();
  if (dirty.rows) renderRows();
  dirty.capabilities = dirty.summary = dirty.top = dirty.changes = dirty.rows = false;
}

/**
 * Shows the state of the connection: the stale-data banner while it is not
 * live, and the operator's words for it (when live, the revision instead).
 * @param {Connection} connection
 * @param {string} [text]
 */
export function showConnection(connection, text) {
  document.body.dataset.connection = connection;
  el.stale.hidden = connection === "live" || state.stats === undefined;
  if (text !== undefined) el.connection.textContent = text;
  else dirty.summary = true;
  requestRender();
}

function renderSummary() {
  const stats = state.stats;
  if (stats === undefined) return;
  el.counts.healthy.textContent = formatCount(stats.healthyWorkers);
  el.counts.degraded.textContent = formatCount(stats.degradedWorkers);
  el.counts.unhealthy.textContent = formatCount(stats.unhealthyWorkers);
  el.counts.total.textContent = formatCount(stats.totalWorkers);
  const share = stats.totalCapacity === 0 ? 0 : stats.usedCapacity / stats.totalCapacity;
  el.capacityFill.style.width = `${(share * 100).toFixed(1)}%`;
  el.capacityFill.classList.toggle("high", share >= 0.9);
  el.capacityBar.setAttribute("aria-valuenow", String(Math.round(share * 100)));
  el.capacityText.textContent = `${formatCount(stats.usedCapacity)} of ${formatCount(stats.totalCapacity)} slots used (${formatPercent(share)})`;
  el.successRate.textContent = stats.successRate === null ? "–" : formatPercent(stats.successRate);
  const completions = stats.tasksCompleted + stats.tasksFailed;
  el.successDetail.textContent =
    completions === 0 ? "no task completed yet" : `${formatCount(stats.tasksCompleted)} of ${formatCount(completions)} tasks succeeded`;
  el.eviction.hidden = !stats.evictionPaused;
  if (stats.evictionPaused) el.eviction.textContent = `Eviction paused: ${stats.evictionPauseReason}`;
  if (document.body.dataset.connection === "live") {
    el.connection.textContent = `Live · revision ${stats.revision}`;
  }
  renderReplica(stats.replica);
  const t = state.thresholds;
  if (t !== undefined) {
    el.legend.textContent =
      `✔ healthy: heartbeat within ${formatDuration(t.healthyThresholdMs)} · ▲ degraded: up to ${formatDuration(t.degradedThresholdMs)} · ` +
      `✖ unhealthy: older · workers heartbeat every ${formatDuration(t.heartbeatIntervalMs)} · ages are pushed every second`;
  }
}

/**
 * Which registry process the page shows, and where it stands among the replicas: "Replica replica-1 · leader
 * replica-0 · replication lag 12 ms" (or "leading"). On SQLite, one process: it leads, and nothing replicates.
 * @param {DashboardReplica} replica
 */
function renderReplica(replica) {
  const role =
    replica.leading ? "leading" : replica.leader === "" ? "no leader at the moment" : `leader ${replica.leader}`;
  const parts = [span("", "Replica "), span("mono", replica.id), span("", " · "), span("role", role)];
  if (replica.store === "sqlite") parts.push(span("", " · SQLite, one process"));
  else parts.push(span("", ` · replication lag ${formatDuration(replica.lagMs)}`));
  el.replica.replaceChildren(...parts);
  el.replica.dataset.leading = String(replica.leading);
}

/** Flashes the card of each health a worker just entered. */
function bumpHealthCards() {
  for (const health of dirty.bumped) {
    const card = document.querySelector(`.health-card[data-health="${health}"]`);
    if (card === null) continue;
    card.classList.add("bumped");
    setTimeout(() => card.classList.remove("bumped"), BUMP_MS);
  }
  dirty.bumped.clear();
}

function renderCapabilityOptions() {
  const select = el.capabilityFilter;
  const chosen = state.filter.capability;
  const names = [...state.capabilities.keys()];
  if (chosen !== "" && !state.capabilities.has(chosen)) names.push(chosen);
  const options = [new Option("all", "")];
  for (const name of names.sort()) options.push(new Option(name, name));
  select.replaceChildren(...options);
  select.value = chosen;
}

/** The workers the server named as the best, in its order: the page does not rank. */
function renderTop() {
  /** @type {PageWorker[]} */
  const best = [];
  for (const id of state.topPerformers) {
    // The feed sends a worker before naming it; an id it has not sent yet waits for the next message.
    const worker = state.workers.get(id);
    if (worker !== undefined) best.push(worker);
  }
  if (best.length === 0) {
    el.top.replaceChildren(item("empty", "No worker is taking tasks"));
    return;
  }
  el.top.replaceChildren(...best.map(topPerformer));
}

/** @param {PageWorker} worker @param {number} i its place, from 0 */
function topPerformer(worker, i) {
  const li = document.createElement("li");
  li.dataset.workerId = worker.id;
  const bar = span("bar", "");
  const fill = span("bar-fill", "");
  fill.style.display = "block";
  fill.style.width = `${Math.max(0, Math.min(1, worker.priority)) * 100}%`;
  bar.append(fill);
  const score = span("score", formatPriority(worker.priority));
  score.prepend(bar);
  li.append(span("rank", `${i + 1}.`), span("who mono", worker.id), span("note", worker.nodeId), healthBadge(worker.health), score);
  li.title = `${worker.id} on ${worker.nodeId}: priority ${formatPriority(worker.priority)}`;
  return li;
}

function renderChanges() {
  if (state.changes.length === 0) {
    el.changes.replaceChildren(item("empty", "Nothing has changed since the page opened"));
    return;
  }
  el.changes.replaceChildren(
    ...state.changes.map((change) => {
      const li = document.createElement("li");
      const time = document.createElement("time");
      time.dateTime = new Date(change.atMs).toISOString();
      time.textContent = new Date(change.atMs).toLocaleTimeString([], { hour12: false });
      li.append(time, span("who mono", change.id));
      if (isHealthStatus(change.to)) {
        if (change.from !== undefined) li.append(healthBadge(change.from), span("note", "→"));
        li.append(healthBadge(change.to));
      } else {
        li.append(span("note", change.to));
      }
      return li;
    }),
  );
}
