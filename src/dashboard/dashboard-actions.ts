import { status } from "@grpc/grpc-js";
import type { IncomingMessage, ServerResponse } from "node:http";
import { InvalidArgumentError } from "../domain/errors.js";
import type { Logger } from "../domain/logger.js";
import type { ScoringOptions } from "../domain/scoring.js";
import type { WorkerRegistry } from "../domain/worker-registry.js";
import { statusForError } from "../transport/status.js";
import { toDashboardWorker, type ActionAnswer, type ActionError, type PermissionsAnswer, type WorkerAction } from "./dashboard-messages.js";

export type { WorkerAction } from "./dashboard-messages.js";

export const WORKER_ACTIONS: readonly WorkerAction[] = ["cordon", "uncordon", "drain"];

/** What the actions change in the registry, and nothing more. */
export type DashboardActionTarget = Pick<WorkerRegistry, "cordonWorker" | "uncordonWorker" | "drainWorker">;

/**
 * Who may act, decided by the access policy the RPCs go through (see
 * server-security.ts): the dashboard has no rules of its own.
 */
export interface DashboardActionGuard {
  /**
   * The actions the request's credentials allow on some worker: what the
   * page offers. Never a promise for a particular worker: {@link authorize}
   * decides each request.
   * @throws UnauthenticatedError when authentication is on and the request carries no valid token.
   */
  allowed(request: IncomingMessage): readonly WorkerAction[];
  /**
   * Checks one action on one worker, and returns who is acting, for the log.
   * @throws UnauthenticatedError, PermissionDeniedError
   */
  authorize(request: IncomingMessage, action: WorkerAction, workerId: string): string;
}

/** Options of the dashboard's actions (see {@link createDashboardRoutes}). */
export interface DashboardActionsOptions {
  readonly registry: DashboardActionTarget;
  readonly guard: DashboardActionGuard;
}

/** The JSON answers of the routes (see dashboard-messages.ts). */
type DashboardActionAnswer = ActionAnswer | PermissionsAnswer | ActionError;

/** Largest request body accepted: `{"graceMs": …}` is a few dozen bytes. */
const MAX_BODY_BYTES = 1024;

/** HTTP statuses of the gRPC codes the registry's errors map to (the one table, transport/status.ts). */
const HTTP_STATUS: Partial<Record<status, number>> = {
  [status.INVALID_ARGUMENT]: 400,
  [status.OUT_OF_RANGE]: 400,
  [status.UNAUTHENTICATED]: 401,
  [status.PERMISSION_DENIED]: 403,
  [status.NOT_FOUND]: 404,
  [status.FAILED_PRECONDITION]: 409,
  [status.RESOURCE_EXHAUSTED]: 429,
  [status.UNAVAILABLE]: 503,
  [status.DEADLINE_EXCEEDED]: 504,
};

const JSON_HEADERS: Readonly<Record<string, string>> = {
  "content-type": "application/json; charset=utf-8",
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
};

const ACTION_PATH = /^api\/workers\/([^/]+)\/(cordon|uncordon|drain)$/;

/**
 * The dashboard's write routes, under `/dashboard/api/`:
 * - `GET api/permissions` answers `{ actions }`: what the request's token
 *   may do (401 without a valid one when tokens are on; none, to anyone,
 *   when the dashboard offers no action);
 * - `POST api/workers/{id}/cordon`, `…/uncordon` and `…/drain` (body
 *   `{}`, or `{ "graceMs": n }` for drain) act, and answer `{ worker }`
 *   after the action. The change reaches every page through the live feed.
 *
 * A write must be sent as JSON (`content-type: application/json`), which
 * a cross-site form cannot send and a cross-site script cannot send without
 * a CORS preflight, which these routes never grant; and a browser's
 * `sec-fetch-site` other than same-origin is refused outright (403). Errors
 * answer `{ error }` with the registry's message: 400 for an invalid
 * request, 401 and 403, 404 for an unknown worker, 409 when the worker's
 * state forbids the action (cordoning a draining worker), 503 when the
 * registry cannot write.
 */
export class DashboardActions {
  /** @param options undefined: no action is offered (permissions answer none, actions 404). */
  constructor(
    private readonly options: DashboardActionsOptions | undefined,
    private readonly scoring: ScoringOptions,
    private readonly log: Logger,
  ) {}

  /** Answers a request for `name` (the path after `/dashboard/`, starting with `api/`). */
  handle(request: IncomingMessage, response: ServerResponse, name: string): void {
    this.answer(request, response, name).catch((error: unknown) => {
      this.log.error({ err: error }, "dashboard action failed");
      if (!response.headersSent) replyJson(response, 500, { error: "internal error" });
      else response.destroy();
    });
  }

  private async answer(request: IncomingMessage, response: ServerResponse, name: string): Promise<void> {
    if (name === "api/permissions") {
      if (request.method !== "GET") return replyJson(response, 405, { error: "method not allowed" }, { allow: "GET" });
      return this.respond(response, "permissions", () => ({ actions: this.options?.guard.allowed(request) ?? [] }));
    }
    const match = ACTION_PATH.exec(name);
    const { options } = this;
    if (match === null || options === undefined) return replyJson(response, 404, { error: "not found" });
    if (request.method !== "POST") return replyJson(response, 405, { error: "method not allowed" }, { allow: "POST" });
    const refusal = crossSiteRefusal(request);
    if (refusal !== undefined) return replyJson(response, 403, { error: refusal });
    const action = match[2] as WorkerAction;
    let workerId: string;
    try {
      workerId = decodeURIComponent(match[1]!);
    } catch {
      return replyJson(response, 400, { error: "the worker id in the path is not valid percent-encoding" });
    }
    let by: string;
    try {
      // Before the body is read: nothing of an unauthorised request is taken in.
      by = options.guard.authorize(request, action, workerId);
    } catch (error) {
      return this.fail(response, action, error);
    }
    const body = await readBody(request);
    if (body === undefined) return replyJson(response, 413, { error: `the body must be at most ${MAX_BODY_BYTES} bytes` }, { connection: "close" });
    await this.respond(response, action, async () => {
      const worker = await act(options.registry, action, workerId, body);
      this.log.info({ workerId, action, by }, "worker state changed from the dashboard");
      return { worker: toDashboardWorker(worker, this.scoring) };
    });
  }

  /** Runs `work` and answers its result, or its error (see {@link fail}). */
  private async respond(response: ServerResponse, method: string, work: () => DashboardActionAnswer | Promise<DashboardActionAnswer>): Promise<void> {
    let answer: DashboardActionAnswer;
    try {
      answer = await work();
    } catch (error) {
      return this.fail(response, method, error);
    }
    replyJson(response, 200, answer);
  }

  /** Answers an error with the HTTP status of the gRPC code the registry's one table gives it, and its message. */
  private fail(response: ServerResponse, method: string, error: unknown): void {
    const { code, details } = statusForError(error, this.log, `dashboard ${method}`);
    const httpStatus = HTTP_STATUS[code] ?? 500;
    replyJson(response, httpStatus, { error: details }, httpStatus === 401 ? { "www-authenticate": 'Bearer realm="worker-registry"' } : {});
  }
}

function act(registry: DashboardActionTarget, action: WorkerAction, workerId: string, body: string) {
  switch (action) {
    case "cordon":
      return registry.cordonWorker(workerId);
    case "uncordon":
      return registry.uncordonWorker(workerId);
    case "drain":
      return registry.drainWorker(workerId, graceOf(body));
  }
}

/**
 * Why a write must be refused as cross-site, or undefined. Browsers send
 * `sec-fetch-site` on every request (other clients, such as curl, send
 * none); a JSON content type forces a CORS preflight on any cross-origin
 * script, which these routes never answer with an allow.
 */
function crossSiteRefusal(request: IncomingMessage): string | undefined {
  const site = request.headers["sec-fetch-site"];
  if (site !== undefined && site !== "same-origin" && site !== "none") return `cross-site request refused (sec-fetch-site: ${site})`;
  const type = request.headers["content-type"] ?? "";
  if (!/^application\/json\s*(;|$)/i.test(type)) return "send the request as JSON: content-type: application/json";
  return undefined;
}

/**
 * The request's body as text, or undefined once it passes
 * {@link MAX_BODY_BYTES} (the rest is not read: the answer closes the connection).
 */
function readBody(request: IncomingMessage): Promise<string | undefined> {
  if (Number(request.headers["content-length"] ?? 0) > MAX_BODY_BYTES) return Promise.resolve(undefined);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    request.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) return void chunks.push(chunk);
      request.pause();
      resolve(undefined);
    });
    request.once("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    request.once("error", reject);
  });
}

/**
 * The drain's grace from a body `{}` or `{ "graceMs": n }`; undefined for
 * the registry's default. Its range is the registry's to check.
 * @throws InvalidArgumentError for a body that is not such an object.
 */
function graceOf(body: string): number | undefined {
  if (body.trim() === "") return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    throw new InvalidArgumentError("body", "must be JSON");
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new InvalidArgumentError("body", 'must be a JSON object: {} or {"graceMs": 300000}');
  const { graceMs } = parsed as { graceMs?: unknown };
  if (graceMs === undefined || graceMs === null) return undefined;
  if (typeof graceMs !== "number" || !Number.isInteger(graceMs)) throw new InvalidArgumentError("graceMs", `must be a whole number of milliseconds, got ${JSON.stringify(graceMs)}`);
  return graceMs;
}

function replyJson(response: ServerResponse, code: number, body: DashboardActionAnswer, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  response.writeHead(code, { ...JSON_HEADERS, "content-length": Buffer.byteLength(text), ...headers });
  response.end(text);
}
