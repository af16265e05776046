// @ts-check
// The workers table: the view (the workers that pass the filters, in the chosen column's order) and its rows. Only
// the rows in view are in the document (fixed row height, spacer rows above and below), so 10,000 workers cost the
// same DOM as 30.

import { el, healthBadge, setText, span } from "./elements.js";
import { formatAge, formatCount, formatDuration, formatPercent, formatPriority } from "./formatting.js";
import { dirty, serverNow, state } from "./state.js";

/** @import { PageWorker, SortKey } from "./state.js" */
/** @import { HealthStatus } from "../../domain/health.js" */
/** @import { DashboardWorker, WorkerAction } from "../dashboard-messages.js" */
/** @typedef {DashboardWorker["state"]} WorkerState */

const ROW_HEIGHT = 32;
const OVERSCAN_ROWS = 10;
const CHANGE_HIGHLIGHT_MS = 3000;
/** @type {readonly SortKey[]} the sortable columns, in the order of the table's header; the actions column follows them */
const COLUMNS = ["id", "node", "version", "labels", "capabilities", "state", "health", "tasks", "success", "duration", "priority", "heartbeat"];
const NUMERIC_COLUMNS = new Set(["tasks", "success", "duration", "priority", "heartbeat"]);

/**
 * How bad a health is, for the Health column's sort alone (worst first on
 * the first click). Not the load balancer's ranking: that comes from the
 * server, as the top performers.
 * @type {Readonly<Record<HealthStatus, number>>}
 */
const HEALTH_SEVERITY = { healthy: 0, degraded: 1, unhealthy: 2 };

/** @type {Readonly<Record<WorkerState, number>>} how far out of rotation, for the State column's sort (draining first on the first click) */
const STATE_ORDER = { active: 0, cordoned: 1, draining: 2 };

/** What each action's button says; the page offers an action only where the registry could take it. */
const ACTION_LABELS = /** @type {const} */ ({ cordon: "Cordon", uncordon: "Uncordon", drain: "Drain" });

/** @type {Readonly<Record<WorkerState, readonly WorkerAction[]>>} the actions that make sense in each state */
const ACTIONS_IN_STATE = { active: ["cordon", "drain"], cordoned: ["uncordon", "drain"], draining: [] };

/** @type {WeakMap<object, string>} each labels object written once: sorting 10,000 rows compares them often */
const labelTexts = new WeakMap();

/**
 * Labels as a selector that matches them, sorted by key: `tier=spot,zone=eu-1`.
 * @param {Readonly<Record<string, string>>} labels
 */
export function labelText(labels) {
  let text = labelTexts.get(labels);
  if (text === undefined) {
    text = Object.keys(labels)
      .sort()
      .map((key) => `${key}=${labels[key]}`)
      .join(",");
    labelTexts.set(labels, text);
  }
  return text;
}

/** @typedef {(a: PageWorker, b: PageWorker) => number} Compare */

/** @type {Readonly<Record<SortKey, Compare>>} ascending, for each column; ties go by id */
const COMPARATORS = {
  id: (a, b) => compareText(a.id, b.id),
  node: (a, b) => compareText(a.nodeId, b.nodeId),
  // Numbers within versions in numeric order: v10 after v9.
  version: (a, b) => a.version.localeCompare(b.version, "en", { numeric: true }),
  labels: (a, b) => compareText(labelText(a.labels), labelText(b.labels)),
  capabilities: (a, b) => compareText(a.capabilities.join(","), b.capabilities.join(",")),
  state: (a, b) => STATE_ORDER[a.state] - STATE_ORDER[b.state],
  health: (a, b) => HEALTH_SEVERITY[a.health] - HEALTH_SEVERITY[b.health],
  tasks: (a, b) => a.currentTasks / a.maxConcurrentTasks - b.currentTasks / b.maxConcurrentTasks || a.currentTasks - b.currentTasks,
  success: (a, b) => (a.successRate ?? -1) - (b.successRate ?? -1),
  duration: (a, b) => (a.averageTaskDurationMs ?? -1) - (b.averageTaskDurationMs ?? -1),
  priority: (a, b) => a.priority - b.priority,
  // Older heartbeat = larger age.
  heartbeat: (a, b) => b.lastHeartbeatAtMs - a.lastHeartbeatAtMs,
};

/** Columns whose first click sorts largest first. */
const DESCENDING_FIRST = new Set(["state", "health", "tasks", "success", "duration", "priority", "heartbeat"]);

/**
 * @param {string | undefined} key
 * @returns {key is SortKey}
 */
export function isSortKey(key) {
  return key !== undefined && Object.hasOwn(COMPARATORS, key);
}

/**
 * The sort after a click on a column's header: the other way round on the
 * same column, else the column's natural first direction.
 * @param {SortKey} key
 */
export function sortAfterClickOn(key) {
  return state.sort.key === key ? { key, descending: !state.sort.descending } : { key, descending: DESCENDING_FIRST.has(key) };
}

/** @param {string} a @param {string} b */
function compareText(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** @type {PageWorker[]} the workers that pass the filters, sorted */
let view = [];

/** Filters and sorts the workers again: O(n log n), so rendering throttles it while messages stream in. */
export function computeView() {
  const { capability, health } = state.filter;
  /** @type {PageWorker[]} */
  const rows = [];
  for (const worker of state.workers.values()) {
    if (health !== "" && worker.health !== health) continue;
    if (capability !== "" && !worker.capabilities.includes(capability)) continue;
    rows.push(worker);
  }
  const compare = COMPARATORS[state.sort.key];
  const sign = state.sort.descending ? -1 : 1;
  rows.sort((a, b) => sign * compare(a, b) || compareText(a.id, b.id));
  view = rows;
  const total = state.workers.size;
  el.shown.textContent = rows.length === total ? `${formatCount(total)} workers` : `${formatCount(rows.length)} of ${formatCount(total)} workers`;
  for (const th of el.headers) {
    th.setAttribute("aria-sort", th.dataset.sort === state.sort.key ? (state.sort.descending ? "descending" : "ascending") : "none");
  }
  dirty.rows = true;
}

/**
 * A row of the table, with its cells by column.
 * @typedef {{ row: HTMLTableRowElement, cells: Readonly<Record<SortKey | "actions", HTMLTableCellElement>> }} Row
 */

/** @type {Row[]} reused as the view scrolls: the table holds only the visible rows */
const rowPool = [];
const topSpacer = spacerRow();
const bottomSpacer = spacerRow();
const noRows = document.createElement("tr");
const noRowsCell = document.createElement("td");
noRows.className = "no-rows";
noRowsCell.colSpan = COLUMNS.length + 1;
noRows.append(noRowsCell);
el.rows.replaceChildren(topSpacer.row, bottomSpacer.row);

/** Draws the rows in view: reuses the pooled rows, and sizes the spacers for the rest. */
export function renderRows() {
  if (view.length === 0) {
    noRowsCell.textContent = state.workers.size === 0 ? "No workers registered" : "No worker matches the filters";
    el.rows.replaceChildren(noRows);
    rowPool.length = 0;
    return;
  }
  if (noRows.isConnected) el.rows.replaceChildren(topSpacer.row, bottomSpacer.row);
  const viewport = el.scroller.clientHeight || window.innerHeight;
  const first = Math.max(0, Math.floor(el.scroller.scrollTop / ROW_HEIGHT) - OVERSCAN_ROWS);
  const last = Math.min(view.length, Math.ceil((el.scroller.scrollTop + viewport) / ROW_HEIGHT) + OVERSCAN_ROWS);
  topSpacer.cell.style.height = `${first * ROW_HEIGHT}px`;
  bottomSpacer.cell.style.height = `${(view.length - last) * ROW_HEIGHT}px`;
  const count = last - first;
  while (rowPool.length < count) {
    const row = newRow();
    rowPool.push(row);
    el.rows.insertBefore(row.row, bottomSpacer.row);
  }
  while (rowPool.length > count) rowPool.pop()?.row.remove();
  const now = serverNow();
  const nowPerf = performance.now();
  rowPool.forEach((row, i) => fillRow(row, /** @type {PageWorker} */ (view[first + i]), now, nowPerf));
}

/** @returns {Row} */
function newRow() {
  const row = document.createElement("tr");
  row.className = "row";
  const cells = [...COLUMNS, "actions"].map((column) => {
    const td = document.createElement("td");
    td.dataset.col = column;
    if (NUMERIC_COLUMNS.has(column)) td.className = "num";
    if (column === "id" || column === "labels") td.className = "mono";
    return /** @type {const} */ ([column, td]);
  });
  row.append(...cells.map(([, td]) => td));
  return { row, cells: /** @type {Record<SortKey | "actions", HTMLTableCellElement>} */ (Object.fromEntries(cells)) };
}

/**
 * @param {Row} pooled
 * @param {PageWorker} worker
 * @param {number} now  the server's wall clock
 * @param {number} nowPerf  performance.now()
 */
function fillRow({ row, cells }, worker, now, nowPerf) {
  const { id, node, version, labels, capabilities, state: stateCell, health, tasks, success, duration, priority, heartbeat, actions } = cells;
  row.dataset.workerId = worker.id;
  const changed = worker.changedAtMs !== undefined && nowPerf - worker.changedAtMs < CHANGE_HIGHLIGHT_MS;
  row.classList.toggle("changed", changed);
  setText(id, worker.id);
  setText(node, worker.nodeId);
  setText(version, worker.version === "" ? "–" : worker.version);
  version.title = worker.version;
  const labelList = labelText(worker.labels);
  setText(labels, labelList === "" ? "–" : labelList);
  labels.title = labelList.replaceAll(",", "\n");
  setText(capabilities, worker.capabilities.join(", "));
  capabilities.title = worker.capabilities.join(", ");
  fillState(stateCell, worker);
  fillActions(actions, worker);
  const healthKey = `${worker.health}|${changed ? worker.was : ""}`;
  if (health.dataset.key !== healthKey) {
    health.dataset.key = healthKey;
    health.dataset.health = worker.health;
    health.replaceChildren(healthBadge(worker.health));
    if (changed) health.append(span("was", `was ${worker.was}`));
  }
  setText(tasks, `${worker.currentTasks} / ${worker.maxConcurrentTasks}`);
  setText(success, worker.successRate === null ? "–" : formatPercent(worker.successRate));
  setText(duration, worker.averageTaskDurationMs === null ? "–" : formatDuration(worker.averageTaskDurationMs));
  setText(priority, formatPriority(worker.priority));
  setText(heartbeat, formatAge(now - worker.lastHeartbeatAtMs));
  heartbeat.title = new Date(worker.lastHeartbeatAtMs).toISOString();
}

/**
 * The state in words (and a border style) with, while draining, when the
 * registry removes the worker at the latest.
 * @param {HTMLTableCellElement} cell
 * @param {PageWorker} worker
 */
function fillState(cell, worker) {
  const key = `${worker.state}|${worker.drainDeadlineMs}`;
  if (cell.dataset.key === key) return;
  cell.dataset.key = key;
  cell.dataset.state = worker.state;
  const badge = span("state", worker.state);
  badge.dataset.state = worker.state;
  cell.replaceChildren(badge);
  cell.title =
    worker.state === "draining" && worker.drainDeadlineMs !== null
      ? `draining: removed once idle, at the latest ${new Date(worker.drainDeadlineMs).toLocaleString()}`
      : worker.state === "cordoned"
        ? "cordoned: out of rotation until uncordoned"
        : "active: in rotation";
}

/**
 * The buttons of the actions the operator may take on the worker in its
 * state; disabled while one is in flight. Clicks are handled once for the
 * whole table (dashboard.js), by the row's worker id.
 * @param {HTMLTableCellElement} cell
 * @param {PageWorker} worker
 */
function fillActions(cell, worker) {
  const offered = ACTIONS_IN_STATE[worker.state].filter((action) => state.actions.has(action));
  const pending = state.pending.has(worker.id);
  const key = `${worker.id}|${offered.join()}|${pending}`;
  if (cell.dataset.key === key) return;
  cell.dataset.key = key;
  cell.replaceChildren(
    ...offered.map((action) => {
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.action = action;
      button.textContent = ACTION_LABELS[action];
      button.setAttribute("aria-label", `${ACTION_LABELS[action]} ${worker.id}`);
      button.disabled = pending;
      return button;
    }),
  );
}

function spacerRow() {
  const row = document.createElement("tr");
  row.className = "spacer";
  row.setAttribute("aria-hidden", "true");
  const cell = document.createElement("td");
  cell.colSpan = COLUMNS.length + 1;
  row.append(cell);
  return { row, cell };
}
