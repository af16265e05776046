// The operator dashboard's page script: plain browser JavaScript, served by the registry itself.
//
// Data: one server-sent event stream (events), read with fetch so that a later
// Authorization header fits in one place (openStream) and no credential ever
// goes in a URL. A snapshot replaces the page's state; watch events are applied
// in order; ticks bring the heartbeat times that changed and the server's clock.
//
// Rendering: state changes only mark what is dirty; one requestAnimationFrame
// applies them. The table renders only the rows in view (fixed row height,
// spacer rows above and below), so 10,000 workers cost the same DOM as 30.

const ROW_HEIGHT = 32;
const OVERSCAN_ROWS = 10;
const CHANGE_HIGHLIGHT_MS = 3000;
const RECENT_CHANGES = 8;
const TOP_PERFORMERS = 5;
const RECONNECT_MIN_MS = 1000;
const RECONNECT_MAX_MS = 15000;
const COLUMNS = ["id", "node", "capabilities", "health", "tasks", "success", "duration", "priority", "heartbeat"];
const HEALTH_GLYPH = { healthy: "✔", degraded: "▲", unhealthy: "✖" };
const HEALTH_RANK = { healthy: 0, degraded: 1, unhealthy: 2 };

const state = {
  /** id -> worker: the server's DashboardWorker, plus changedAtMs / was for a health change. */
  workers: new Map(),
  stats: undefined,
  thresholds: undefined,
  revision: 0,
  /** capability -> number of workers that have it. */
  capabilities: new Map(),
  changes: [],
  filter: { capability: "", health: "" },
  sort: { key: "health", descending: true },
  /** The server's wall clock at a moment of this page's monotonic clock: heartbeat ages are server time. */
  clock: { serverMs: 0, atPerfMs: 0 },
  /** The filtered, sorted rows. */
  view: [],
};

const dirty = { view: true, rows: true, summary: true, top: true, changes: true, capabilities: true };
let frameRequested = false;

const $ = (id) => document.getElementById(id);
const el = {
  connection: $("connection"),
  tokenForm: $("token-form"),
  tokenInput: $("token-input"),
  stale: $("stale"),
  eviction: $("eviction"),
  capacityBar: $("capacity-bar"),
  capacityFill: $("capacity-fill"),
  capacityText: $("capacity-text"),
  successRate: $("success-rate"),
  successDetail: $("success-detail"),
  top: $("top"),
  changes: $("changes"),
  capabilityFilter: $("filter-capability"),
  healthFilter: $("filter-health"),
  shown: $("shown"),
  scroller: $("scroller"),
  rows: $("rows"),
  legend: $("legend"),
  headers: [...document.querySelectorAll("thead th[data-sort]")],
  counts: Object.fromEntries([...document.querySelectorAll("[data-count]")].map((node) => [node.dataset.count, node])),
};

// ---- time -------------------------------------------------------------------------------------

function setServerClock(serverTimeMs) {
  state.clock = { serverMs: serverTimeMs, atPerfMs: performance.now() };
}

function serverNow() {
  return state.clock.serverMs + (performance.now() - state.clock.atPerfMs);
}

// ---- messages ---------------------------------------------------------------------------------

function applySnapshot(message) {
  setServerClock(message.serverTimeMs);
  state.thresholds = message.thresholds;
  state.stats = message.stats;
  state.revision = message.revision;
  state.workers = new Map();
  state.capabilities = new Map();
  for (const worker of message.workers) addWorker(worker);
  viewUrgent = true;
  markAll();
}

function applyEvents(message) {
  for (const event of message.events) {
    state.revision = Math.max(state.revision, event.revision);
    const before = state.workers.get(event.worker.id);
    if (event.type === "unregistered" || event.type === "removed") {
      if (before !== undefined) removeWorker(before);
      recordChange(event, event.type === "removed" ? "removed (expired)" : "left", undefined);
      continue;
    }
    const next = event.worker;
    if (before === undefined) {
      if (event.type === "registered") recordChange(event, "joined", undefined);
      addWorker(next);
      continue;
    }
    // Updated in place, so the rows in view show the change before the next re-sort.
    removeWorker(before);
    const wasHealth = before.health;
    // Heartbeat times also arrive by tick; never go back in time.
    const lastHeartbeatAtMs = Math.max(next.lastHeartbeatAtMs, before.lastHeartbeatAtMs);
    Object.assign(before, next, { lastHeartbeatAtMs });
    if (wasHealth !== next.health) {
      before.changedAtMs = performance.now();
      before.was = wasHealth;
      recordChange(event, next.health, wasHealth);
      bumpHealthCard(next.health);
    }
    addWorker(before);
  }
  state.stats = message.stats;
  dirty.view = dirty.rows = dirty.summary = dirty.top = true;
  requestRender();
}

function applyTick(message) {
  setServerClock(message.serverTimeMs);
  for (const [id, atMs] of message.heartbeats) {
    const worker = state.workers.get(id);
    if (worker !== undefined && atMs > worker.lastHeartbeatAtMs) worker.lastHeartbeatAtMs = atMs;
  }
  state.stats = message.stats;
  if (state.sort.key === "heartbeat") dirty.view = true;
  dirty.rows = dirty.summary = true;
  requestRender();
}

function addWorker(worker) {
  state.workers.set(worker.id, worker);
  for (const capability of worker.capabilities) {
    const count = state.capabilities.get(capability) ?? 0;
    state.capabilities.set(capability, count + 1);
    if (count === 0) dirty.capabilities = true;
  }
}

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

function recordChange(event, to, from) {
  state.changes.unshift({ atMs: event.occurredAtMs, id: event.worker.id, node: event.worker.nodeId, to, from });
  state.changes.length = Math.min(state.changes.length, RECENT_CHANGES);
  dirty.changes = true;
}

function bumpHealthCard(health) {
  const card = document.querySelector(`.health-card[data-health="${health}"]`);
  if (card === null) return;
  card.classList.add("bumped");
  setTimeout(() => card.classList.remove("bumped"), 50);
}

function markAll() {
  for (const key of Object.keys(dirty)) dirty[key] = true;
  requestRender();
}

// ---- the stream -------------------------------------------------------------------------------

let reconnectDelayMs = RECONNECT_MIN_MS;

/** Opens the event stream; the one place that would add request headers (a bearer token) later. */
/** The operator's token, kept for this tab only (sessionStorage), sent as a header, never in a URL. */
const TOKEN_KEY = "worker-registry-token";

function openStream(signal) {
  const headers = { accept: "text/event-stream" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.authorization = `Bearer ${token}`;
  return fetch("events", { headers, cache: "no-store", signal });
}

/** Shows the token form and resolves once the operator has entered a token. */
function askForToken() {
  el.tokenForm.hidden = false;
  el.tokenInput.focus();
  return new Promise((resolve) => {
    el.tokenForm.addEventListener(
      "submit",
      (event) => {
        event.preventDefault();
        sessionStorage.setItem(TOKEN_KEY, el.tokenInput.value.trim());
        el.tokenInput.value = "";
        el.tokenForm.hidden = true;
        resolve();
      },
      { once: true },
    );
  });
}

async function connect() {
  for (;;) {
    const controller = new AbortController();
    try {
      const response = await openStream(controller.signal);
      if (response.status === 401 || response.status === 403) {
        setConnection("unauthorized", "This registry needs a token to show the fleet");
        sessionStorage.removeItem(TOKEN_KEY);
        controller.abort();
        await askForToken();
        reconnectDelayMs = RECONNECT_MIN_MS;
        continue;
      } else if (!response.ok || response.body === null) {
        setConnection("reconnecting", `Registry answered ${response.status}; retrying…`);
      } else {
        await readStream(response.body);
        setConnection("reconnecting", "Connection lost; reconnecting…");
      }
    } catch (error) {
      setConnection("reconnecting", "Cannot reach the registry; reconnecting…");
    } finally {
      controller.abort();
    }
    await new Promise((resolve) => setTimeout(resolve, reconnectDelayMs));
    reconnectDelayMs = Math.min(RECONNECT_MAX_MS, reconnectDelayMs * 2);
  }
}

/** Reads server-sent events until the stream ends. */
async function readStream(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    // A snapshot spans many chunks: look for the end of a message only in what is new.
    let from = Math.max(0, buffer.length - 1);
    buffer += value;
    let start = 0;
    let end;
    while ((end = buffer.indexOf("\n\n", from)) >= 0) {
      dispatch(buffer.slice(start, end));
      start = from = end + 2;
    }
    buffer = buffer.slice(start);
  }
}

function dispatch(block) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) name = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  if (data.length === 0) return;
  const message = JSON.parse(data.join("\n"));
  if (name === "snapshot") {
    applySnapshot(message);
    reconnectDelayMs = RECONNECT_MIN_MS;
    setConnection("live");
  } else if (name === "events") {
    applyEvents(message);
  } else if (name === "tick") {
    applyTick(message);
  }
}

function setConnection(connection, text) {
  document.body.dataset.connection = connection;
  el.stale.hidden = connection === "live" || state.stats === undefined;
  if (text !== undefined) el.connection.textContent = text;
  else dirty.summary = true;
  requestRender();
}

// ---- rendering --------------------------------------------------------------------------------

function requestRender() {
  if (frameRequested) return;
  frameRequested = true;
  requestAnimationFrame(render);
}

/**
 * Re-sorting 10,000 rows costs a few milliseconds: while messages stream in it
 * runs at most this often (rows in view still show each change at once, being
 * updated in place). A click on a header or a filter re-sorts at once.
 */
const VIEW_INTERVAL_MS = 200;
let lastViewAtMs = -Infinity;
let viewUrgent = true;
let viewTimer;

function render() {
  frameRequested = false;
  if (dirty.capabilities) renderCapabilityOptions();
  if (dirty.view) {
    const waitMs = lastViewAtMs + VIEW_INTERVAL_MS - performance.now();
    if (viewUrgent || waitMs <= 0) {
      computeView();
      lastViewAtMs = performance.now();
      viewUrgent = false;
      dirty.view = false;
    } else {
      viewTimer ??= setTimeout(() => {
        viewTimer = undefined;
        requestRender();
      }, waitMs);
    }
  }
  if (dirty.summary) renderSummary();
  if (dirty.top) renderTop();
  if (dirty.changes) renderChanges();
  if (dirty.rows) renderRows();
  for (const key of Object.keys(dirty)) if (key !== "view") dirty[key] = false;
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
  const t = state.thresholds;
  if (t !== undefined) {
    el.legend.textContent =
      `✔ healthy: heartbeat within ${formatDuration(t.healthyThresholdMs)} · ▲ degraded: up to ${formatDuration(t.degradedThresholdMs)} · ` +
      `✖ unhealthy: older · workers heartbeat every ${formatDuration(t.heartbeatIntervalMs)} · ages are pushed every second`;
  }
}

function renderCapabilityOptions() {
  const select = el.capabilityFilter;
  const chosen = state.filter.capability;
  const names = [...state.capabilities.keys()].sort();
  if (chosen !== "" && !state.capabilities.has(chosen)) names.push(chosen);
  const options = [new Option("all", "")];
  for (const name of names.sort()) options.push(new Option(name, name));
  select.replaceChildren(...options);
  select.value = chosen;
}

function computeView() {
  const { capability, health } = state.filter;
  const rows = [];
  for (const worker of state.workers.values()) {
    if (health !== "" && worker.health !== health) continue;
    if (capability !== "" && !worker.capabilities.includes(capability)) continue;
    rows.push(worker);
  }
  const compare = COMPARATORS[state.sort.key];
  const sign = state.sort.descending ? -1 : 1;
  rows.sort((a, b) => sign * compare(a, b) || compareText(a.id, b.id));
  state.view = rows;
  const total = state.workers.size;
  el.shown.textContent = rows.length === total ? `${formatCount(total)} workers` : `${formatCount(rows.length)} of ${formatCount(total)} workers`;
  for (const th of el.headers) {
    th.setAttribute("aria-sort", th.dataset.sort === state.sort.key ? (state.sort.descending ? "descending" : "ascending") : "none");
  }
  dirty.rows = true;
}

const COMPARATORS = {
  id: (a, b) => compareText(a.id, b.id),
  node: (a, b) => compareText(a.nodeId, b.nodeId),
  capabilities: (a, b) => compareText(a.capabilities.join(","), b.capabilities.join(",")),
  health: (a, b) => HEALTH_RANK[a.health] - HEALTH_RANK[b.health],
  tasks: (a, b) => a.currentTasks / a.maxConcurrentTasks - b.currentTasks / b.maxConcurrentTasks || a.currentTasks - b.currentTasks,
  success: (a, b) => (a.successRate ?? -1) - (b.successRate ?? -1),
  duration: (a, b) => (a.averageTaskDurationMs ?? -1) - (b.averageTaskDurationMs ?? -1),
  priority: (a, b) => a.priority - b.priority,
  // Older heartbeat = larger age.
  heartbeat: (a, b) => b.lastHeartbeatAtMs - a.lastHeartbeatAtMs,
};

/** Columns whose first click sorts largest first. */
const DESCENDING_FIRST = new Set(["health", "tasks", "success", "duration", "priority", "heartbeat"]);

function compareText(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

function renderTop() {
  const best = [];
  for (const worker of state.workers.values()) {
    if (worker.health === "unhealthy") continue;
    if (best.length < TOP_PERFORMERS || ranksAbove(worker, best[best.length - 1])) {
      best.push(worker);
      best.sort((a, b) => (ranksAbove(a, b) ? -1 : 1));
      if (best.length > TOP_PERFORMERS) best.pop();
    }
  }
  if (best.length === 0) {
    el.top.replaceChildren(item("empty", "No worker is taking tasks"));
    return;
  }
  el.top.replaceChildren(
    ...best.map((worker, i) => {
      const li = document.createElement("li");
      li.dataset.workerId = worker.id;
      const bar = document.createElement("span");
      bar.className = "bar";
      const fill = document.createElement("span");
      fill.className = "bar-fill";
      fill.style.display = "block";
      fill.style.width = `${Math.max(0, Math.min(1, worker.priority)) * 100}%`;
      bar.append(fill);
      const score = span("score", formatPriority(worker.priority));
      score.prepend(bar);
      li.append(span("rank", `${i + 1}.`), span("who mono", worker.id), span("note", worker.nodeId), healthBadge(worker.health), score);
      li.title = `${worker.id} on ${worker.nodeId}: priority ${formatPriority(worker.priority)}`;
      return li;
    }),
  );
}

/** The load balancer's order: healthy before degraded, then priority, then fewer tasks, then id. */
function ranksAbove(a, b) {
  if (a.health !== b.health) return HEALTH_RANK[a.health] < HEALTH_RANK[b.health];
  if (a.priority !== b.priority) return a.priority > b.priority;
  if (a.currentTasks !== b.currentTasks) return a.currentTasks < b.currentTasks;
  return a.id < b.id;
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
      if (HEALTH_GLYPH[change.to] !== undefined) {
        if (change.from !== undefined) li.append(healthBadge(change.from), span("note", "→"));
        li.append(healthBadge(change.to));
      } else {
        li.append(span("note", change.to));
      }
      return li;
    }),
  );
}

/** Row elements reused as the view scrolls: the table holds only the visible rows. */
const rowPool = [];
const topSpacer = spacerRow();
const bottomSpacer = spacerRow();
const noRows = document.createElement("tr");
noRows.className = "no-rows";
noRows.append(document.createElement("td"));
noRows.firstChild.colSpan = COLUMNS.length;
el.rows.replaceChildren(topSpacer, bottomSpacer);

function renderRows() {
  const view = state.view;
  if (view.length === 0) {
    noRows.firstChild.textContent = state.workers.size === 0 ? "No workers registered" : "No worker matches the filters";
    el.rows.replaceChildren(noRows);
    rowPool.length = 0;
    return;
  }
  if (noRows.isConnected) el.rows.replaceChildren(topSpacer, bottomSpacer);
  const viewport = el.scroller.clientHeight || window.innerHeight;
  const first = Math.max(0, Math.floor(el.scroller.scrollTop / ROW_HEIGHT) - OVERSCAN_ROWS);
  const last = Math.min(view.length, Math.ceil((el.scroller.scrollTop + viewport) / ROW_HEIGHT) + OVERSCAN_ROWS);
  topSpacer.firstChild.style.height = `${first * ROW_HEIGHT}px`;
  bottomSpacer.firstChild.style.height = `${(view.length - last) * ROW_HEIGHT}px`;
  const count = last - first;
  while (rowPool.length < count) {
    const row = newRow();
    rowPool.push(row);
    el.rows.insertBefore(row, bottomSpacer);
  }
  while (rowPool.length > count) rowPool.pop().remove();
  const now = serverNow();
  const nowPerf = performance.now();
  for (let i = 0; i < count; i++) fillRow(rowPool[i], view[first + i], now, nowPerf);
}

function newRow() {
  const row = document.createElement("tr");
  row.className = "row";
  for (const column of COLUMNS) {
    const td = document.createElement("td");
    td.dataset.col = column;
    if (["tasks", "success", "duration", "priority", "heartbeat"].includes(column)) td.className = "num";
    if (column === "id") td.className = "mono";
    row.append(td);
  }
  return row;
}

function fillRow(row, worker, now, nowPerf) {
  const cells = row.children;
  row.dataset.workerId = worker.id;
  const changed = worker.changedAtMs !== undefined && nowPerf - worker.changedAtMs < CHANGE_HIGHLIGHT_MS;
  row.classList.toggle("changed", changed);
  setText(cells[0], worker.id);
  setText(cells[1], worker.nodeId);
  setText(cells[2], worker.capabilities.join(", "));
  cells[2].title = worker.capabilities.join(", ");
  const healthKey = `${worker.health}|${changed ? worker.was : ""}`;
  if (cells[3].dataset.key !== healthKey) {
    cells[3].dataset.key = healthKey;
    cells[3].dataset.health = worker.health;
    cells[3].replaceChildren(healthBadge(worker.health));
    if (changed) cells[3].append(span("was", `was ${worker.was}`));
  }
  setText(cells[4], `${worker.currentTasks} / ${worker.maxConcurrentTasks}`);
  setText(cells[5], worker.successRate === null ? "–" : formatPercent(worker.successRate));
  setText(cells[6], worker.averageTaskDurationMs === null ? "–" : formatDuration(worker.averageTaskDurationMs));
  setText(cells[7], formatPriority(worker.priority));
  setText(cells[8], formatAge(now - worker.lastHeartbeatAtMs));
  cells[8].title = new Date(worker.lastHeartbeatAtMs).toISOString();
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

function spacerRow() {
  const row = document.createElement("tr");
  row.className = "spacer";
  row.setAttribute("aria-hidden", "true");
  const td = document.createElement("td");
  td.colSpan = COLUMNS.length;
  row.append(td);
  return row;
}

function healthBadge(health) {
  const badge = span("badge", "");
  badge.dataset.health = health;
  const glyph = span("glyph", HEALTH_GLYPH[health] ?? "?");
  glyph.setAttribute("aria-hidden", "true");
  badge.append(glyph, document.createTextNode(health));
  return badge;
}

function span(className, text) {
  const node = document.createElement("span");
  node.className = className;
  node.textContent = text;
  return node;
}

function item(className, text) {
  const li = document.createElement("li");
  li.className = className;
  li.textContent = text;
  return li;
}

// ---- formatting -------------------------------------------------------------------------------

const countFormat = new Intl.NumberFormat("en");

function formatCount(n) {
  return countFormat.format(n);
}

function formatPercent(share) {
  return `${(share * 100).toFixed(1)} %`;
}

function formatPriority(priority) {
  return priority.toFixed(3);
}

function formatDuration(ms) {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
  if (ms < 3_600_000) return `${(ms / 60_000).toFixed(1)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

/** Whole seconds: ages move once a second, and a finer figure would be noise. */
function formatAge(ms) {
  if (ms < 1000) return "<1 s";
  const seconds = Math.floor(ms / 1000);
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${seconds % 60} s`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ${minutes % 60} min`;
  return `${Math.floor(hours / 24)} d`;
}

// ---- controls ---------------------------------------------------------------------------------

el.capabilityFilter.addEventListener("change", () => {
  state.filter.capability = el.capabilityFilter.value;
  resetScroll();
});
el.healthFilter.addEventListener("change", () => {
  state.filter.health = el.healthFilter.value;
  resetScroll();
});
for (const th of el.headers) {
  th.querySelector("button").addEventListener("click", () => {
    const key = th.dataset.sort;
    state.sort = state.sort.key === key ? { key, descending: !state.sort.descending } : { key, descending: DESCENDING_FIRST.has(key) };
    resetScroll();
  });
}
el.scroller.addEventListener("scroll", () => {
  dirty.rows = true;
  requestRender();
}, { passive: true });
window.addEventListener("resize", () => {
  dirty.rows = true;
  requestRender();
});
// Ages and change highlights move with time, not only with messages.
setInterval(() => {
  dirty.rows = true;
  requestRender();
}, 1000);

function resetScroll() {
  el.scroller.scrollTop = 0;
  dirty.view = true;
  viewUrgent = true;
  requestRender();
}

renderChanges();
requestRender();
connect();
