import { readdirSync } from "node:fs";
import type { IncomingMessage } from "node:http";
import { connect } from "node:net";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaultAssetsDirectory } from "../../src/dashboard/dashboard-assets.js";
import { createDashboardRoutes } from "../../src/dashboard/dashboard-routes.js";
import { silentLogger } from "../../src/domain/logger.js";
import { DEFAULT_SCORING } from "../../src/domain/registry-options.js";
import { startMetricsServer, type MetricsServer } from "../../src/metrics/metrics-server.js";
import { createTestRegistry } from "../support/registry-fixture.js";
import { SseReader } from "./sse-reader.js";

const THRESHOLDS = { healthyThresholdMs: 600_000, degradedThresholdMs: 900_000, heartbeatIntervalMs: 300_000 };

/** The headers every file of the page comes with: a policy that allows the registry's own origin only. */
function expectPageHeaders(response: Response): void {
  const policy = response.headers.get("content-security-policy")!;
  expect(policy).toMatch(/default-src 'none'/);
  for (const directive of ["script-src 'self'", "style-src 'self'", "connect-src 'self'"]) expect(policy).toContain(directive);
  expect(response.headers.get("x-content-type-options")).toBe("nosniff");
  expect(response.headers.get("cache-control")).toBe("no-cache");
}

/** Starts a metrics server with the dashboard on it, over a registry on a fake clock. */
async function startDashboard(authorize?: (request: IncomingMessage) => boolean) {
  const { registry, clock } = await createTestRegistry();
  await registry.registerWorker({ nodeId: "route-1", capabilities: ["cpu"], maxConcurrentTasks: 2 });
  const routes = createDashboardRoutes({ registry, scoring: DEFAULT_SCORING, thresholds: THRESHOLDS, clock, log: silentLogger, ...(authorize ? { authorize } : {}) });
  const server = await startMetricsServer({ host: "127.0.0.1", port: 0, registry: new Registry(), log: silentLogger, routes });
  return { server, registry, url: (path: string) => `http://127.0.0.1:${server.port}${path}` };
}

describe("dashboard routes", () => {
  let open: Awaited<ReturnType<typeof startDashboard>>;
  /** Fetches a file of the page: 200 with its type and the page's headers, then 304 for its ETag. */
  const fetchAsset = async (name: string, type: string): Promise<string> => {
    const asset = await fetch(open.url(`/dashboard/${name}`));
    expect([name, asset.status, asset.headers.get("content-type")]).toEqual([name, 200, type]);
    expectPageHeaders(asset);
    const etag = asset.headers.get("etag")!;
    const body = await asset.text();
    expect((await fetch(open.url(`/dashboard/${name}`), { headers: { "if-none-match": etag } })).status).toBe(304);
    return body;
  };
  beforeAll(async () => {
    open = await startDashboard();
  });
  afterAll(async () => {
    await open.server.close();
    await open.registry.close();
  });

  it("serves the page, its modules and its style from the registry itself, under a policy that allows no other origin", async () => {
    const redirect = await fetch(open.url("/dashboard"), { redirect: "manual" });
    expect([redirect.status, redirect.headers.get("location")]).toEqual([308, "dashboard/"]);

    const page = await fetch(open.url("/dashboard/"));
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expectPageHeaders(page);
    const html = await page.text();
    expect(html).toContain('<script type="module" src="dashboard.js"></script>');

    const referenced = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!).filter((ref) => !ref.startsWith("data:"));
    expect(referenced.sort()).toEqual(["dashboard.css", "dashboard.js"]);
    const css = await fetchAsset("dashboard.css", "text/css; charset=utf-8");
    // The entry module and every module it imports, followed from import to import as the browser does.
    const modules = new Map<string, string>();
    const toLoad = ["dashboard.js"];
    for (let name = toLoad.pop(); name !== undefined; name = toLoad.pop()) {
      if (modules.has(name)) continue;
      const body = await fetchAsset(name, "text/javascript; charset=utf-8");
      modules.set(name, body);
      toLoad.push(...[...body.matchAll(/^import\s[^;]*?from\s+"\.\/([^"]+)";/gm)].map((m) => m[1]!));
    }
    // Every module of the folder is reached, so none is dead, and each one is type-checked (// @ts-check).
    const onDisk = readdirSync(defaultAssetsDirectory()).filter((name) => name.endsWith(".js"));
    expect([...modules.keys()].sort()).toEqual(onDisk.sort());
    for (const [name, body] of modules) expect(body.startsWith("// @ts-check\n"), name).toBe(true);
    expect((await fetch(open.url("/dashboard/tsconfig.json"))).status).toBe(404);

    // No CDN, no web font, no analytics: the page works in a closed network.
    for (const body of [html, css, ...modules.values()]) expect(body).not.toMatch(/https?:\/\//);
    for (const body of [html, css]) expect(body).not.toMatch(/@import|url\(/);
  });

  it("answers 404 to unknown dashboard paths, 405 to writes, and leaves /metrics and other paths alone", async () => {
    expect((await fetch(open.url("/dashboard/secrets.json"))).status).toBe(404);
    const post = await fetch(open.url("/dashboard/events"), { method: "POST" });
    expect([post.status, post.headers.get("allow")]).toEqual([405, "GET, HEAD"]);
    expect((await fetch(open.url("/metrics"))).status).toBe(200);
    expect((await fetch(open.url("/"))).status).toBe(404);
    expect((await fetch(open.url("/dashboardx"))).status).toBe(404);
  });
});

describe("dashboard authorization", () => {
  const seen: IncomingMessage[] = [];
  let guarded: Awaited<ReturnType<typeof startDashboard>>;
  beforeAll(async () => {
    guarded = await startDashboard((request) => {
      seen.push(request);
      return request.headers.authorization === "Bearer s3cret";
    });
  });
  afterAll(async () => {
    await guarded.server.close();
    await guarded.registry.close();
  });

  it("guards the feed, the only route with fleet data; the page and its files need no token", async () => {
    for (const path of ["/dashboard/", "/dashboard/dashboard.js", "/dashboard/state.js", "/dashboard/dashboard.css"]) {
      const page = await fetch(guarded.url(path));
      expect([path, page.status]).toEqual([path, 200]);
      expect(await page.text()).not.toContain("route-1");
    }
    const refused = await fetch(guarded.url("/dashboard/events"));
    expect(refused.status).toBe(401);
    expect(refused.headers.get("www-authenticate")).toMatch(/^Bearer/);
    expect(await refused.text()).toBe("unauthorized\n");
    const events = await SseReader.open(guarded.url("/dashboard/events"), { authorization: "Bearer s3cret" });
    try {
      const snapshot = await events.nextNamed("snapshot");
      expect(snapshot.data.workers.map((w: any) => w.nodeId)).toEqual(["route-1"]);
    } finally {
      events.close();
    }
    expect(seen.map((request) => new URL(request.url!, "http://x").pathname)).toEqual(["/dashboard/events", "/dashboard/events"]);
  });

  it("never asks about /metrics: the dashboard's check is its own", async () => {
    const before = seen.length;
    const metrics = await fetch(guarded.url("/metrics"));
    expect([metrics.status, await metrics.text()]).toEqual([200, expect.any(String)]);
    expect(seen.length).toBe(before);
  });
});

describe("closing the dashboard's server", () => {
  it("does not wait for a connection that never sent a request, as browsers open ahead of need", async () => {
    const { server, registry } = await startDashboard();
    const preconnected = connect(server.port, "127.0.0.1");
    await new Promise((resolve) => preconnected.once("connect", resolve));
    const startedAt = Date.now();
    await server.close();
    expect(Date.now() - startedAt).toBeLessThan(1000);
    await registry.close();
  });
});
