import type { IncomingMessage, ServerResponse } from "node:http";
import type { Clock } from "../domain/clock.js";
import type { Logger } from "../domain/logger.js";
import type { ScoringOptions } from "../domain/scoring.js";
import type { HttpRoutes } from "../metrics/metrics-server.js";
import { DashboardActions, type DashboardActionsOptions } from "./dashboard-actions.js";
import { loadDashboardAssets, type DashboardAssets } from "./dashboard-assets.js";
import { DashboardFeed, type DashboardFeedOptions, type DashboardSource } from "./dashboard-feed.js";
import type { DashboardThresholds } from "./dashboard-messages.js";
import { SseStream } from "./sse-stream.js";

/** The path prefix of every dashboard route. */
export const DASHBOARD_PATH = "/dashboard/";

/**
 * Decides whether a request may see the dashboard. The one place where
 * access is checked: every dashboard route (page, assets, event stream)
 * passes through it before anything is served. It reads the request's
 * headers (never the URL: credentials do not belong in URLs, which end up in
 * logs and histories).
 */
export type DashboardAuthorizer = (request: IncomingMessage) => boolean;

/** Options of {@link createDashboardRoutes}. */
export interface DashboardRoutesOptions {
  readonly registry: DashboardSource;
  /** The registry's weights, so the page shows the priorities load balancing uses. */
  readonly scoring: ScoringOptions;
  readonly thresholds: DashboardThresholds;
  readonly clock: Clock;
  readonly log: Logger;
  /** Who may read the live feed (the fleet's data). Default: everyone who can reach the port. */
  readonly authorize?: DashboardAuthorizer;
  /** Batching and buffering of the event stream; see {@link DashboardFeedOptions}. */
  readonly feed?: DashboardFeedOptions;
  /** The page's files. Default: read from src/dashboard/assets at start-up. */
  readonly assets?: DashboardAssets;
  /**
   * Lets authorised operators cordon, uncordon and drain workers from the
   * page (see {@link DashboardActions}). Default: none; the page offers no
   * action (its permissions answer none, and the actions 404).
   */
  readonly actions?: DashboardActionsOptions;
}

/**
 * Security headers of every dashboard response. The policy allows only the
 * registry's own origin, so the page cannot load a CDN or font by mistake
 * and works unchanged in a closed network.
 */
const PAGE_HEADERS: Readonly<Record<string, string>> = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-cache",
};

/**
 * The operator dashboard, read-only, for the metrics port:
 * - `GET /dashboard` redirects to `/dashboard/` (so the page's relative
 *   links also work behind a reverse proxy's path prefix);
 * - `GET /dashboard/` is the page; `/dashboard/dashboard.css` its style and
 *   `/dashboard/dashboard.js` its entry module, which imports the others
 *   (`/dashboard/state.js`, …): every file of src/dashboard/assets, served
 *   from memory with the same headers;
 * - `GET /dashboard/events` is the live feed as server-sent events (see
 *   {@link DashboardFeed} and dashboard-messages.ts);
 * - `/dashboard/api/…` are the operator's actions on workers, with `actions`
 *   (see {@link DashboardActions}), each authorised on its own.
 *
 * Other methods answer 405, unknown paths under /dashboard/ 404, and a
 * feed request the authorizer refuses 401 (with no detail). The page and
 * its files hold no fleet data and are served to anyone.
 * @throws Error when an asset is missing (see {@link loadDashboardAssets}).
 */
export function createDashboardRoutes(options: DashboardRoutesOptions): HttpRoutes {
  const { log } = options;
  const authorize = options.authorize ?? (() => true);
  const assets = options.assets ?? loadDashboardAssets();
  const feed = new DashboardFeed(options.registry, options.scoring, options.thresholds, options.clock, log, options.feed);
  const actions = new DashboardActions(options.actions, options.scoring, log);

  const serve = (request: IncomingMessage, response: ServerResponse, path: string): void => {
    if (path.startsWith(`${DASHBOARD_PATH}api/`)) return actions.handle(request, response, path.slice(DASHBOARD_PATH.length));
    if (request.method !== "GET" && request.method !== "HEAD") return reply(response, 405, "method not allowed\n", { allow: "GET, HEAD" });
    if (path === "/dashboard") return reply(response, 308, "", { location: "dashboard/" });
    const name = path === DASHBOARD_PATH ? "index.html" : path.slice(DASHBOARD_PATH.length);
    if (name === "events") {
      // Only the feed carries fleet data, and only it is checked: a browser cannot put a bearer header on a
      // page it navigates to, but the page's own fetch of the feed can (the token is never in a URL).
      if (!authorize(request)) return reply(response, 401, "unauthorized\n", { "www-authenticate": 'Bearer realm="worker-registry"' });
      if (request.method === "HEAD") return reply(response, 405, "method not allowed\n", { allow: "GET" });
      const stream = new SseStream(response, feed.maxBufferedBytes, (s) => feed.resync(s));
      feed.attach(stream).catch((error: unknown) => log.warn({ err: error }, "dashboard feed could not start"));
      return;
    }
    const asset = assets.get(name);
    if (asset === undefined) return reply(response, 404, "not found\n");
    if (request.headers["if-none-match"] === asset.etag) return reply(response, 304, "", { etag: asset.etag, ...PAGE_HEADERS });
    response.writeHead(200, { "content-type": asset.contentType, "content-length": asset.body.length, etag: asset.etag, ...PAGE_HEADERS });
    response.end(request.method === "HEAD" ? undefined : asset.body);
  };

  return {
    handle(request, response) {
      const path = pathOf(request);
      if (path === undefined || (path !== "/dashboard" && !path.startsWith(DASHBOARD_PATH))) return false;
      try {
        serve(request, response, path);
      } catch (error) {
        log.error({ err: error }, "dashboard request failed");
        if (!response.headersSent) reply(response, 500, "internal error\n");
        else response.destroy();
      }
      return true;
    },
    close() {
      feed.close();
    },
  };
}

function pathOf(request: IncomingMessage): string | undefined {
  try {
    // The host is irrelevant here; a base only makes the request target parseable.
    return new URL(request.url ?? "/", "http://dashboard").pathname;
  } catch {
    return undefined;
  }
}

function reply(response: ServerResponse, code: number, body: string, headers: Record<string, string> = {}): void {
  response.writeHead(code, { "content-type": "text/plain; charset=utf-8", ...headers });
  response.end(body);
}
