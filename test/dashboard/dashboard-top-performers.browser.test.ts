import type { Page } from "playwright-core";
import { Registry } from "prom-client";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { DashboardSource } from "../../src/dashboard/dashboard-feed.js";
import { createDashboardRoutes } from "../../src/dashboard/dashboard-routes.js";
import { silentLogger } from "../../src/domain/logger.js";
import { DEFAULT_SCORING } from "../../src/domain/registry-options.js";
import type { WorkerRegistry } from "../../src/domain/worker-registry.js";
import { startMetricsServer, type MetricsServer } from "../../src/metrics/metrics-server.js";
import type { FakeClock } from "../support/fake-clock.js";
import { createTestRegistry, NO_FILTER } from "../support/registry-fixture.js";
import { useChromium } from "./chromium.js";

// The functions below run in the page; this file is compiled without the DOM's types.
declare const document: any;

const MINUTE = 60_000;
const THRESHOLDS = { healthyThresholdMs: 10 * MINUTE, degradedThresholdMs: 15 * MINUTE, heartbeatIntervalMs: 5 * MINUTE };

/** What the page's top performers list shows: [worker id, health, score] per line, best first. */
const shownTop = (): [string, string, string][] =>
  [...document.querySelectorAll("#top li[data-worker-id]")].map((li: any) => [
    li.dataset.workerId,
    li.querySelector(".badge").dataset.health,
    li.querySelector(".score").textContent.trim(),
  ]);

describe("the dashboard's top performers in Chromium", () => {
  const chromium = useChromium();
  let registry: WorkerRegistry;
  let clock: FakeClock;
  let server: MetricsServer;
  let page: Page;
  const pageErrors: string[] = [];
  const ids = new Map<string, string>();

  /** The registry's best five, as the page should show them. */
  const ranked = () =>
    registry.getWorkersForLoadBalancing(NO_FILTER, 5).map((r): [string, string, string] => [r.worker.id, r.worker.healthStatus, r.priority.toFixed(3)]);

  async function register(nodeId: string, maxConcurrentTasks: number, tasks = 0): Promise<void> {
    const { id } = await registry.registerWorker({ nodeId, capabilities: ["cpu"], maxConcurrentTasks });
    if (tasks > 0) await registry.updateTaskCount(id, tasks);
    ids.set(nodeId, id);
  }

  /** Waits until the page shows the registry's best five, and says how long that took. */
  async function expectShownAsRanked(): Promise<number> {
    const startedAt = Date.now();
    const expected = ranked();
    // Polled from here: the page's policy forbids evaluating a string, so the reading function cannot be passed in.
    for (;;) {
      const shown = await page.evaluate(shownTop);
      if (JSON.stringify(shown) === JSON.stringify(expected)) return Date.now() - startedAt;
      if (Date.now() - startedAt > 5000) expect(shown).toEqual(expected);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  beforeAll(async () => {
    const browser = chromium.browser;
    if (browser === undefined) return;
    ({ registry, clock } = await createTestRegistry({ workerTtlMs: 60 * MINUTE }));
    await register("silent", 16);
    clock.advance(4 * MINUTE);
    await register("degraded", 16);
    await register("idle", 4);
    await register("half-of-four", 4, 2);
    await register("half-of-two", 2, 1);
    await register("busy", 4, 3);
    await register("full", 2, 2);
    clock.advance(12 * MINUTE);
    for (const node of ["idle", "half-of-four", "half-of-two", "busy", "full"]) registry.heartbeat(ids.get(node)!);
    await registry.tick();

    const routes = createDashboardRoutes({ registry, scoring: DEFAULT_SCORING, thresholds: THRESHOLDS, clock, log: silentLogger, feed: { tickMs: 200 } });
    server = await startMetricsServer({ host: "127.0.0.1", port: 0, registry: new Registry(), log: silentLogger, routes });
    page = await browser.newPage();
    page.on("pageerror", (error) => pageErrors.push(error.message));
    page.on("console", (message) => message.type() === "error" && pageErrors.push(message.text()));
    await page.goto(`http://127.0.0.1:${server.port}/dashboard/`);
    await page.waitForFunction(() => document.body.dataset.connection === "live");
  });

  afterEach(() => {
    expect(pageErrors).toEqual([]);
  });

  afterAll(async () => {
    await page?.close();
    await server?.close();
    await registry?.close();
  });

  it("shows the registry's best five in its order, a degraded worker below healthy ones whatever its priority", async () => {
    await expectShownAsRanked();
    const shown = (await page.evaluate(shownTop)).map(([id, health]) => [id, health]);
    const byNode = (node: string) => ids.get(node)!;
    expect(shown).toEqual([
      [byNode("idle"), "healthy"],
      [byNode("half-of-two"), "healthy"],
      [byNode("half-of-four"), "healthy"],
      [byNode("busy"), "healthy"],
      [byNode("full"), "healthy"],
    ]);
    // The degraded worker has the best priority of all, and the unhealthy one is not taking tasks: neither is shown.
    expect(shown.map(([id]) => id)).not.toContain(byNode("degraded"));
    expect(shown.map(([id]) => id)).not.toContain(byNode("silent"));
  });

  it("follows the registry's order within a second when the fleet changes", async () => {
    await registry.unregisterWorker(ids.get("full")!);
    expect(await expectShownAsRanked()).toBeLessThan(1000);
    expect((await page.evaluate(shownTop)).at(-1)).toEqual([ids.get("degraded"), "degraded", expect.any(String)]);

    await registry.updateTaskCount(ids.get("idle")!, 4);
    expect(await expectShownAsRanked()).toBeLessThan(1000);
    expect((await page.evaluate(shownTop))[0]![0]).toBe(ids.get("half-of-two"));
  });

  it("shows the list the feed names exactly as given: the page holds no ranking rule of its own", async () => {
    // A feed whose registry ranks backwards: a page that sorted by any rule would not show this order.
    const backwards: DashboardSource = {
      watch: (filter, startRevision, listener) => registry.watch(filter, startRevision, listener),
      discoverWorkers: (filter, pageSize, pageToken) => registry.discoverWorkers(filter, pageSize, pageToken),
      getRegistryStats: () => registry.getRegistryStats(),
      forEachLastHeartbeat: (visit) => registry.forEachLastHeartbeat(visit),
      getWorkersForLoadBalancing: (filter, limit) => registry.getWorkersForLoadBalancing(filter, 0).slice(0, limit).reverse(),
    };
    const routes = createDashboardRoutes({ registry: backwards, scoring: DEFAULT_SCORING, thresholds: THRESHOLDS, clock, log: silentLogger });
    const other = await startMetricsServer({ host: "127.0.0.1", port: 0, registry: new Registry(), log: silentLogger, routes });
    const otherPage = await chromium.browser!.newPage();
    try {
      await otherPage.goto(`http://127.0.0.1:${other.port}/dashboard/`);
      await otherPage.waitForFunction(() => document.querySelectorAll("#top li[data-worker-id]").length === 5);
      expect((await otherPage.evaluate(shownTop)).map(([id]) => id)).toEqual(ranked().map(([id]) => id).reverse());
    } finally {
      await otherPage.close();
      await other.close();
    }
  });
});
