// @ts-check
// The operator dashboard's page: plain browser modules, served by the registry itself and type-checked from their
// JSDoc (tsconfig.json here). This one wires them together:
// - feed.js follows the server's event stream and hands each message to state.js, which applies it and marks what
//   changed; rendering.js (and table.js for the workers table) draws that on the next animation frame;
// - the controls (filters, column headers, scrolling) change what the table shows;
// - actions.js asks what the operator may do once the feed is live, and sends the actions of the rows' buttons.

import { act, isWorkerAction, refreshPermissions } from "./actions.js";
import { el } from "./elements.js";
import { followFeed } from "./feed.js";
import { requestRender, showConnection } from "./rendering.js";
import { applyEvents, applySnapshot, applyTick, dirty, state } from "./state.js";
import { isSortKey, sortAfterClickOn } from "./table.js";

/** @import { HealthStatus } from "../../domain/health.js" */

/** Shows the token form and resolves to the token the operator enters. */
function askForToken() {
  el.tokenForm.hidden = false;
  el.tokenInput.focus();
  return new Promise(
    /** @param {(token: string) => void} resolve */
    (resolve) => {
      el.tokenForm.addEventListener(
        "submit",
        (event) => {
          event.preventDefault();
          const token = el.tokenInput.value.trim();
          el.tokenInput.value = "";
          el.tokenForm.hidden = true;
          resolve(token);
        },
        { once: true },
      );
    },
  );
}

/** Back to the first row, and the view re-sorted at once: after a filter or a sort changes. */
function resetScroll() {
  el.scroller.scrollTop = 0;
  dirty.view = dirty.viewNow = true;
  requestRender();
}

function redrawRows() {
  dirty.rows = true;
  requestRender();
}

el.capabilityFilter.addEventListener("change", () => {
  state.filter.capability = el.capabilityFilter.value;
  resetScroll();
});
el.healthFilter.addEventListener("change", () => {
  state.filter.health = /** @type {HealthStatus | ""} */ (el.healthFilter.value);
  resetScroll();
});
for (const th of el.headers) {
  const key = th.dataset.sort;
  if (!isSortKey(key)) throw new Error(`the table has a column with an unknown sort: ${key}`);
  th.querySelector("button")?.addEventListener("click", () => {
    state.sort = sortAfterClickOn(key);
    resetScroll();
  });
}
// One listener for every button of the table: rows are recycled as the view scrolls, so a button is known by its row.
el.rows.addEventListener("click", (event) => {
  const button = event.target instanceof Element ? event.target.closest("button[data-action]") : null;
  const row = button?.closest("tr.row");
  if (!(button instanceof HTMLButtonElement) || !(row instanceof HTMLTableRowElement)) return;
  const action = button.dataset.action;
  const workerId = row.dataset.workerId;
  if (isWorkerAction(action) && workerId !== undefined) void act(workerId, action);
});
el.scroller.addEventListener("scroll", redrawRows, { passive: true });
window.addEventListener("resize", redrawRows);
// Ages and change highlights move with time, not only with messages.
setInterval(redrawRows, 1000);

requestRender();
followFeed({
  snapshot(message) {
    applySnapshot(message);
    requestRender();
    // On every connection: the token may be new.
    void refreshPermissions();
  },
  events(message) {
    applyEvents(message);
    requestRender();
  },
  tick(message) {
    applyTick(message);
    requestRender();
  },
  connection: showConnection,
  askForToken,
});
