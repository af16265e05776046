import { request as httpRequest } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Registry } from "prom-client";
import type { RegistryServer } from "../../src/app.js";
import { createDashboardRoutes } from "../../src/dashboard/dashboard-routes.js";
import { silentLogger } from "../../src/domain/logger.js";
import { DEFAULT_SCORING } from "../../src/domain/registry-options.js";
import { startMetricsServer } from "../../src/metrics/metrics-server.js";
import { createTestRegistry } from "../support/registry-fixture.js";
import { tempDirs } from "../support/temp-dir.js";
import { SseReader } from "./sse-reader.js";
import { TokenClient } from "./token-client.js";
import { startSecuredServer } from "../support/secured-server.js";

const ADMIN = "admin-token-for-the-dashboard-actions-test";
const ORCHESTRATOR = "orchestrator-token-for-the-dashboard-actions-test";
const WORKER_ROLE = "worker-role-token-for-the-dashboard-actions-test";
const MISSING = "worker-1767268800123-abc123xyz";

/**
 * The dashboard's actions on a real server with tokens: each request goes
 * through the server's own access policy, and each change reaches the pages
 * through the live feed.
 */
describe("the dashboard's worker actions", () => {
  const dirs = tempDirs();
  let server: RegistryServer;
  let client: TokenClient;
  /** Registers with the worker-role token: the workers are that token's own. */
  let registrar: TokenClient;

  beforeAll(async () => {
    const dir = dirs.make();
    server = await startSecuredServer(dir, { admin: ADMIN, orchestrator: ORCHESTRATOR, worker: WORKER_ROLE }, { metricsPort: 0 });
    client = new TokenClient(`127.0.0.1:${server.port}`, ADMIN);
    registrar = new TokenClient(`127.0.0.1:${server.port}`, WORKER_ROLE);
  });

  afterAll(async () => {
    client?.close();
    registrar?.close();
    await server?.close();
    dirs.cleanup();
  });

  const url = (path: string) => `http://127.0.0.1:${server.metricsPort}/dashboard/${path}`;

  /** A worker with a running task, so that a drain leaves it draining instead of removing it at once. */
  const busyWorker = (nodeId: string) => registrar.busyWorker(nodeId, { zone: "eu-1" }, "v1");

  /** POSTs an action as the page does: JSON, with the token in a header. */
  function post(workerId: string, action: string, token: string | undefined, body: unknown = {}, headers: Record<string, string> = {}) {
    return fetch(url(`api/workers/${encodeURIComponent(workerId)}/${action}`), {
      method: "POST",
      headers: { "content-type": "application/json", ...(token === undefined ? {} : { authorization: `Bearer ${token}` }), ...headers },
      body: typeof body === "string" ? body : JSON.stringify(body),
    });
  }

  it("tells each token which actions it may take: the access policy's answer, not the feed's", async () => {
    const permissions = (token?: string) => fetch(url("api/permissions"), { headers: token === undefined ? {} : { authorization: `Bearer ${token}` } });
    for (const token of [ADMIN, ORCHESTRATOR]) {
      const answer = await permissions(token);
      expect([answer.status, answer.headers.get("content-type"), answer.headers.get("cache-control")]).toEqual([200, "application/json; charset=utf-8", "no-store"]);
      expect(await answer.json()).toEqual({ actions: ["cordon", "uncordon", "drain"] });
    }
    // A worker-role token may read nothing of the fleet and cordon nothing, but may drain the workers it registered.
    expect(await (await permissions(WORKER_ROLE)).json()).toEqual({ actions: ["drain"] });
    const anonymous = await permissions();
    expect([anonymous.status, anonymous.headers.get("www-authenticate")]).toEqual([401, 'Bearer realm="worker-registry"']);
    expect((await permissions("not-a-valid-token-at-all")).status).toBe(401);
  });

  it("cordons, uncordons and drains with an orchestrator token, answering the worker after each", async () => {
    const id = await busyWorker("actions-1");
    const cordoned = await post(id, "cordon", ORCHESTRATOR);
    expect(cordoned.status).toBe(200);
    expect(((await cordoned.json()) as any).worker).toMatchObject({ id, nodeId: "actions-1", state: "cordoned", labels: { zone: "eu-1" }, version: "v1", drainDeadlineMs: null });
    expect(await client.stateOf(id)).toBe("cordoned");

    const uncordoned = await post(id, "uncordon", ORCHESTRATOR);
    expect([uncordoned.status, ((await uncordoned.json()) as any).worker.state]).toEqual([200, "active"]);

    const before = Date.now();
    const drained = await post(id, "drain", ADMIN, { graceMs: 60_000 });
    expect(drained.status).toBe(200);
    const { worker } = (await drained.json()) as any;
    expect(worker.state).toBe("draining");
    expect(worker.drainDeadlineMs).toBeGreaterThanOrEqual(before + 60_000 - 1000);
    expect(worker.drainDeadlineMs).toBeLessThanOrEqual(Date.now() + 60_000);
    expect(await client.stateOf(id)).toBe("draining");
  });

  it("maps the registry's refusals: 409 for a draining worker, 404 for an unknown one, 400 for a bad grace", async () => {
    const id = await busyWorker("actions-2");
    expect((await post(id, "drain", ORCHESTRATOR)).status).toBe(200);
    for (const action of ["cordon", "uncordon"]) {
      const refused = await post(id, action, ORCHESTRATOR);
      expect([action, refused.status]).toEqual([action, 409]);
      expect(((await refused.json()) as any).error).toContain(id);
    }
    const unknown = await post(MISSING, "cordon", ORCHESTRATOR);
    expect([unknown.status, await unknown.json()]).toEqual([404, { error: `worker ${MISSING} not found` }]);

    const other = await busyWorker("actions-3");
    for (const body of [{ graceMs: 10 }, { graceMs: "5m" }, "[1]", "{not json"]) {
      const bad = await post(other, "drain", ORCHESTRATOR, body);
      expect([JSON.stringify(body), bad.status]).toEqual([JSON.stringify(body), 400]);
      expect(((await bad.json()) as any).error).toMatch(/grace|body/);
    }
    expect(await client.stateOf(other)).toBe("active");
  });

  it("answers 401 without a valid token and 403 to a token the policy refuses, changing nothing", async () => {
    const id = await busyWorker("actions-4");
    const anonymous = await post(id, "cordon", undefined);
    expect([anonymous.status, anonymous.headers.get("www-authenticate")]).toEqual([401, 'Bearer realm="worker-registry"']);
    expect((await post(id, "cordon", "not-a-valid-token-at-all")).status).toBe(401);
    const workerRole = await post(id, "cordon", WORKER_ROLE);
    expect(workerRole.status).toBe(403);
    expect(((await workerRole.json()) as any).error).toMatch(/may not|may .* only/);
    expect(await client.stateOf(id)).toBe("active");
  });

  it("refuses what a cross-site page could send: a form, plain text, a cross-site fetch, a preflight", async () => {
    const id = await busyWorker("actions-5");
    const asForm = await post(id, "cordon", ORCHESTRATOR, "a=1", { "content-type": "application/x-www-form-urlencoded" });
    expect([asForm.status, ((await asForm.json()) as any).error]).toEqual([403, "send the request as JSON: content-type: application/json"]);
    expect((await post(id, "cordon", ORCHESTRATOR, "{}", { "content-type": "text/plain" })).status).toBe(403);
    const crossSite = await post(id, "cordon", ORCHESTRATOR, {}, { "sec-fetch-site": "cross-site" });
    expect([crossSite.status, ((await crossSite.json()) as any).error]).toEqual([403, "cross-site request refused (sec-fetch-site: cross-site)"]);
    expect((await post(id, "cordon", ORCHESTRATOR, {}, { "sec-fetch-site": "same-site" })).status).toBe(403);
    const preflight = await fetch(url(`api/workers/${id}/cordon`), {
      method: "OPTIONS",
      headers: { origin: "https://evil.example", "access-control-request-method": "POST", "access-control-request-headers": "content-type, authorization" },
    });
    expect(preflight.status).toBe(405);
    expect(preflight.headers.get("access-control-allow-origin")).toBeNull();
    expect((await fetch(url(`api/workers/${id}/cordon`))).status).toBe(405);
    expect(await client.stateOf(id)).toBe("active");
    // The page's own request is same-origin: accepted.
    expect((await post(id, "cordon", ORCHESTRATOR, {}, { "sec-fetch-site": "same-origin" })).status).toBe(200);
  });

  it("refuses a body larger than an action needs, and unknown action paths", async () => {
    const id = await busyWorker("actions-6");
    const status = await new Promise<number>((resolve, reject) => {
      const request = httpRequest(url(`api/workers/${id}/drain`), {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${ORCHESTRATOR}`, "transfer-encoding": "chunked" },
      });
      request.on("response", (response) => {
        response.resume();
        resolve(response.statusCode!);
      });
      request.on("error", reject);
      request.write(`{"graceMs": 60000, "padding": "${"x".repeat(4096)}`);
    });
    expect(status).toBe(413);
    expect(await client.stateOf(id)).toBe("active");
    expect((await post(id, "delete", ORCHESTRATOR)).status).toBe(404);
    expect((await fetch(url("api/secrets"), { headers: { authorization: `Bearer ${ORCHESTRATOR}` } })).status).toBe(404);
  });

  it("shows each change on the live feed, in order, as it shows any other", async () => {
    const id = await busyWorker("actions-7");
    const feed = await SseReader.open(url("events"), { authorization: `Bearer ${ORCHESTRATOR}` });
    try {
      const snapshot = await feed.nextNamed("snapshot");
      expect(snapshot.data.workers.find((w: any) => w.id === id)).toMatchObject({ state: "active", labels: { zone: "eu-1" }, version: "v1" });
      const stateOn = async (state: string) => {
        const message = await feed.until((m) => m.name === "events" && m.data.events.some((e: any) => e.worker.id === id && e.worker.state === state));
        return message.data.events.find((e: any) => e.worker.id === id && e.worker.state === state);
      };
      expect((await post(id, "cordon", ORCHESTRATOR)).status).toBe(200);
      expect(await stateOn("cordoned")).toMatchObject({ previousState: "active" });
      expect((await post(id, "drain", ORCHESTRATOR, { graceMs: 60_000 })).status).toBe(200);
      const draining = await stateOn("draining");
      expect(draining).toMatchObject({ previousState: "cordoned" });
      expect(draining.worker.drainDeadlineMs).toEqual(expect.any(Number));
      // Its task done, the draining worker is removed by the registry: the page hears why.
      await registrar.call("updateTaskCount", { workerId: id, delta: -1 });
      const leaves = (e: any) => e.worker.id === id && (e.type === "unregistered" || e.type === "removed");
      const left = await feed.until((m) => m.name === "events" && m.data.events.some(leaves));
      expect(left.data.events.find(leaves)).toMatchObject({ type: "unregistered", removalReason: "drained" });
    } finally {
      feed.close();
    }
  });
});

describe("a dashboard served without actions", () => {
  it("tells every page it may do nothing, and has no action route", async () => {
    const { registry, clock } = await createTestRegistry();
    const { id } = await registry.registerWorker({ nodeId: "plain", capabilities: ["cpu"], maxConcurrentTasks: 1 });
    const thresholds = { healthyThresholdMs: 600_000, degradedThresholdMs: 900_000, heartbeatIntervalMs: 300_000 };
    const routes = createDashboardRoutes({ registry, scoring: DEFAULT_SCORING, thresholds, clock, log: silentLogger });
    const server = await startMetricsServer({ host: "127.0.0.1", port: 0, registry: new Registry(), log: silentLogger, routes });
    try {
      const permissions = await fetch(`http://127.0.0.1:${server.port}/dashboard/api/permissions`);
      expect([permissions.status, await permissions.json()]).toEqual([200, { actions: [] }]);
      const cordon = await fetch(`http://127.0.0.1:${server.port}/dashboard/api/workers/${id}/cordon`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: "{}",
      });
      expect(cordon.status).toBe(404);
      expect(registry.getWorker(id).state).toBe("active");
    } finally {
      await server.close();
      await registry.close();
    }
  });
});
