// @ts-check
// The operator's actions on workers: which ones the token allows (asked of the registry whenever the feed connects,
// so a new token is asked about too), and the requests that cordon, uncordon or drain a worker. The page changes no
// worker itself: what an action did comes back through the feed, like any other change.

import { el } from "./elements.js";
import { authorizationHeader } from "./feed.js";
import { requestRender } from "./rendering.js";
import { dirty, state } from "./state.js";

/** @import { ActionError, PermissionsAnswer, WorkerAction } from "../dashboard-messages.js" */

/** @type {readonly WorkerAction[]} */
const ACTIONS = ["cordon", "uncordon", "drain"];

/**
 * @param {string | undefined} value
 * @returns {value is WorkerAction}
 */
export function isWorkerAction(value) {
  return ACTIONS.some((action) => action === value);
}

/**
 * Asks the registry what the operator's token may do, and shows the buttons
 * of those actions (none when it says nothing, or cannot be asked).
 */
export async function refreshPermissions() {
  /** @type {readonly WorkerAction[]} */
  let allowed = [];
  try {
    const response = await fetch("api/permissions", { headers: authorizationHeader(), cache: "no-store" });
    if (response.ok) allowed = /** @type {PermissionsAnswer} */ (await response.json()).actions.filter(isWorkerAction);
  } catch {
    // The buttons wait for the next connection of the feed.
  }
  state.actions = new Set(allowed);
  el.table.classList.toggle("can-act", state.actions.size > 0);
  dirty.rows = true;
  requestRender();
}

/**
 * Asks the registry to act on a worker; a drain, which only the worker's
 * re-registration undoes, is confirmed first. A refusal is shown in words.
 * @param {string} workerId
 * @param {WorkerAction} action
 */
export async function act(workerId, action) {
  if (state.pending.has(workerId)) return;
  const worker = state.workers.get(workerId);
  if (
    action === "drain" &&
    !window.confirm(
      `Drain ${workerId}${worker === undefined ? "" : ` on ${worker.nodeId}`}?\n\n` +
        "It takes no new task, and the registry removes it once its tasks finish, or at the drain deadline " +
        "(the registry's default grace) whatever it still runs. Only its re-registration undoes a drain.",
    )
  ) {
    return;
  }
  state.pending.add(workerId);
  dirty.rows = true;
  requestRender();
  try {
    const response = await fetch(`api/workers/${encodeURIComponent(workerId)}/${action}`, {
      method: "POST",
      // JSON, as the registry requires of every action: a cross-site form cannot send it.
      headers: { "content-type": "application/json", ...authorizationHeader() },
      body: "{}",
      cache: "no-store",
    });
    if (response.ok) {
      showActionError(undefined);
    } else {
      const answer = /** @type {Partial<ActionError>} */ (await response.json().catch(() => ({})));
      showActionError(`Could not ${action} ${workerId}: ${answer.error ?? `the registry answered ${response.status}`}`);
      // The token may have been revoked or replaced: offer only what it still allows.
      if (response.status === 401 || response.status === 403) void refreshPermissions();
    }
  } catch {
    showActionError(`Could not ${action} ${workerId}: the registry cannot be reached`);
  } finally {
    state.pending.delete(workerId);
    dirty.rows = true;
    requestRender();
  }
}

/** @param {string | undefined} text  undefined hides the banner */
function showActionError(text) {
  el.actionError.hidden = text === undefined;
  el.actionError.textContent = text ?? "";
}
