// @ts-check
// The live feed: one server-sent-event stream (GET events), read with fetch rather than EventSource so that the
// operator's token travels in a header and never in a URL. Reconnects with a growing delay when the stream breaks,
// and asks for a token when the registry refuses the page. Knows the messages' names, not what they mean.

/** @import { EventsMessage, SnapshotMessage, TickMessage } from "../dashboard-messages.js" */

/** @typedef {"connecting" | "live" | "reconnecting" | "unauthorized"} Connection */

/**
 * What the feed calls.
 * @typedef {object} FeedHandlers
 * @property {(message: SnapshotMessage) => void} snapshot  first on every connection, and on a resynchronisation
 * @property {(message: EventsMessage) => void} events
 * @property {(message: TickMessage) => void} tick
 * @property {(connection: Connection, text?: string) => void} connection  the stream's state, with words for the operator
 *   (none when live: the page shows the revision then)
 * @property {() => Promise<string>} askForToken  resolves to the token the operator entered
 */

/** The operator's token, kept for this tab only (sessionStorage) and sent as a header. */
const TOKEN_KEY = "worker-registry-token";
const RECONNECT_MIN_MS = 1000;
const RECONNECT_MAX_MS = 15000;

/**
 * Follows the feed for as long as the page is open: never returns.
 * @param {FeedHandlers} handlers
 * @returns {Promise<never>}
 */
export async function followFeed(handlers) {
  let reconnectDelayMs = RECONNECT_MIN_MS;
  /** @param {string} block */
  const dispatch = (block) => {
    const message = parseEvent(block);
    if (message === undefined) return;
    if (message.name === "snapshot") {
      handlers.snapshot(/** @type {SnapshotMessage} */ (message.data));
      reconnectDelayMs = RECONNECT_MIN_MS;
      handlers.connection("live");
    } else if (message.name === "events") {
      handlers.events(/** @type {EventsMessage} */ (message.data));
    } else if (message.name === "tick") {
      handlers.tick(/** @type {TickMessage} */ (message.data));
    }
  };
  for (;;) {
    const controller = new AbortController();
    try {
      const response = await openStream(controller.signal);
      if (response.status === 401 || response.status === 403) {
        handlers.connection("unauthorized", "This registry needs a token to show the fleet");
        sessionStorage.removeItem(TOKEN_KEY);
        controller.abort();
        sessionStorage.setItem(TOKEN_KEY, await handlers.askForToken());
        reconnectDelayMs = RECONNECT_MIN_MS;
        continue;
      } else if (!response.ok || response.body === null) {
        handlers.connection("reconnecting", `Registry answered ${response.status}; retrying…`);
      } else {
        await readStream(response.body, dispatch);
        handlers.connection("reconnecting", "Connection lost; reconnecting…");
      }
    } catch {
      handlers.connection("reconnecting", "Cannot reach the registry; reconnecting…");
    } finally {
      controller.abort();
    }
    await new Promise((resolve) => setTimeout(resolve, reconnectDelayMs));
    reconnectDelayMs = Math.min(RECONNECT_MAX_MS, reconnectDelayMs * 2);
  }
}

/**
 * The header that carries the operator's token, if one was entered: the one
 * place that reads it, for the feed and the actions alike.
 * @returns {Record<string, string>}
 */
export function authorizationHeader() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { authorization: `Bearer ${token}` } : {};
}

/**
 * Opens the event stream.
 * @param {AbortSignal} signal
 */
function openStream(signal) {
  return fetch("events", { headers: { accept: "text/event-stream", ...authorizationHeader() }, cache: "no-store", signal });
}

/**
 * Reads server-sent events until the stream ends, handing each one's text to `dispatch`.
 * @param {NonNullable<Response["body"]>} body
 * @param {(block: string) => void} dispatch
 */
async function readStream(body, dispatch) {
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

/**
 * One server-sent event's name and parsed JSON, or undefined for one without data.
 * @param {string} block
 * @returns {{ name: string, data: unknown } | undefined}
 */
function parseEvent(block) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) name = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  if (data.length === 0) return undefined;
  return { name, data: JSON.parse(data.join("\n")) };
}
