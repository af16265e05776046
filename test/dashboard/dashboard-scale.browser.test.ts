import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRegistryServer, type RegistryServer } from "../../src/app.js";
import type { WorkerEvent } from "../../src/domain/worker-events.js";
import { tempDirs } from "../support/temp-dir.js";
import { ARTIFACTS_DIR, useChromium } from "./chromium.js";

// The functions below run in the page; this file is compiled without the DOM's types.
declare const document: any;
declare const window: any;
declare const requestAnimationFrame: (callback: () => void) => void;
declare const PerformanceObserver: any;

const FLEET = 10_000;
const CAPABILITIES = ["cpu", "gpu", "io", "build", "test", "render", "ingest", "train", "serve", "batch"];
const ALL = { capabilities: [], healthStatuses: [], minAvailableCapacity: 0 };

describe("operator dashboard with 10,000 workers", () => {
  const dirs = tempDirs();
  let server: RegistryServer;
  const chromium = useChromium();
  let page: Page;
  let stopWatch: () => void;
  const ids: string[] = [];
  const seen = new Map<string, number>();
  const measured: Record<string, number> = {};

  const settle = () => page.evaluate(() => new Promise<void>((done) => requestAnimationFrame(() => requestAnimationFrame(() => done()))));
  const visibleIds = () => page.$$eval("tr.row", (rows: any[]) => rows.map((row) => row.dataset.workerId as string));
  const tasksShown = ([id, tasks]: string[]) => document.querySelector(`tr.row[data-worker-id="${id}"] td[data-col="tasks"]`)?.textContent === tasks;

  beforeAll(async () => {
    const browser = chromium.browser;
    if (browser === undefined) return;
    server = await startRegistryServer({ host: "127.0.0.1", port: 0, metricsPort: 0, dbPath: join(dirs.make(), "registry.db"), logLevel: "silent" });
    const registry = server.registry;
    const registrations: Promise<{ id: string }>[] = [];
    for (let i = 0; i < FLEET; i++) {
      const capabilities = [CAPABILITIES[i % CAPABILITIES.length]!, CAPABILITIES[(i * 7 + 3) % CAPABILITIES.length]!].filter((c, j, all) => all.indexOf(c) === j);
      registrations.push(registry.registerWorker({ nodeId: `node-${String(i).padStart(5, "0")}`, capabilities, maxConcurrentTasks: 4 }));
    }
    ids.push(...(await Promise.all(registrations)).map((w) => w.id));
    await Promise.all(ids.filter((_, i) => i % 7 === 0).map((id, i) => registry.updateTaskCount(id, 1 + (i % 3))));
    stopWatch = await registry.watch(ALL, 0, (event: WorkerEvent) => seen.set(`${event.worker.id}:${event.worker.currentTasks}`, Date.now()));

    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const startedAt = Date.now();
    await page.goto(`http://127.0.0.1:${server.metricsPort}/dashboard`);
    await page.waitForFunction(() => document.querySelectorAll("tr.row").length > 0, undefined, { polling: "raf", timeout: 15_000 });
    measured.firstRowsMs = Date.now() - startedAt;
    await page.evaluate(() => {
      window.longTasks = [];
      new PerformanceObserver((list: any) => window.longTasks.push(...list.getEntries().map((e: any) => e.duration))).observe({ type: "longtask" });
    });
  }, 120_000);

  afterAll(async () => {
    stopWatch?.();
    if (page) measured.longestTaskAfterLoadMs = Math.max(0, ...(await page.evaluate(() => window.longTasks as number[])));
    writeFileSync(join(ARTIFACTS_DIR, "scale.json"), `${JSON.stringify(measured, null, 2)}\n`);
    await server?.close();
    dirs.cleanup();
  });

  it("loads every worker but renders only the rows in view", async () => {
    expect(measured.firstRowsMs).toBeLessThan(5000);
    expect((await page.textContent('[data-count="total"]'))!.trim()).toBe("10,000");
    expect((await page.textContent("#shown"))!.trim()).toBe("10,000 workers");
    const rows = (await visibleIds()).length;
    expect(rows).toBeGreaterThan(10);
    expect(rows).toBeLessThan(80);
  });

  it("shows a change to a worker in view within a second, also amid a burst of 1,000 changes and 10,000 heartbeats", async () => {
    const first = (await visibleIds())[0]!;
    const shownTasks = (await page.textContent(`tr.row[data-worker-id="${first}"] td[data-col="tasks"]`))!;
    const current = Number(shownTasks.split(" / ")[0]);
    const target = current < 4 ? current + 1 : current - 1;
    await server.registry.updateTaskCount(first, target - current);
    await page.waitForFunction(tasksShown, [first, `${target} / 4`], { polling: "raf", timeout: 5000 });
    measured.singleChangeMs = Date.now() - seen.get(`${first}:${target}`)!;
    expect(measured.singleChangeMs).toBeLessThan(1000);

    // Every worker beats (the next tick carries 10,000 heartbeat times) while 1,000 others change.
    for (const id of ids) server.registry.heartbeat(id);
    const others = ids.filter((id) => id !== first).slice(0, 1000);
    const burst = others.map(async (id) => {
      const worker = server.registry.getWorker(id);
      await server.registry.updateTaskCount(id, worker.currentTasks < 4 ? 1 : -1);
    });
    const back = target - 1 >= 0 ? target - 1 : target + 1;
    burst.push(server.registry.updateTaskCount(first, back - target).then(() => {}));
    await Promise.all(burst);
    await page.waitForFunction(tasksShown, [first, `${back} / 4`], { polling: "raf", timeout: 5000 });
    measured.changeInBurstMs = Date.now() - seen.get(`${first}:${back}`)!;
    expect(measured.changeInBurstMs).toBeLessThan(1000);
    // The heartbeat ages of the rows in view follow within a tick and a second.
    await page.waitForFunction(() => [...document.querySelectorAll('tr.row td[data-col="heartbeat"]')].every((cell: any) => /^(<1|1) s$/.test(cell.textContent)), undefined, {
      polling: "raf",
      timeout: 3000,
    });
  });

  it("sorts and filters 10,000 rows, and scrolls to the last of them", async () => {
    let startedAt = Date.now();
    await page.click('th[data-sort="priority"] button');
    await settle();
    measured.sortMs = Date.now() - startedAt;
    expect(measured.sortMs).toBeLessThan(1000);
    const best = server.registry.getWorkersForLoadBalancing(ALL, 1)[0]!;
    const topPriority = Number(await page.textContent('tr.row td[data-col="priority"]'));
    expect(topPriority).toBeCloseTo(best.priority, 3);

    startedAt = Date.now();
    await page.selectOption("#filter-capability", "train");
    await settle();
    measured.filterMs = Date.now() - startedAt;
    const matching = server.registry.discoverWorkers({ ...ALL, capabilities: ["train"] }, 10_000).workers.length;
    expect((await page.textContent("#shown"))!.trim()).toBe(`${matching.toLocaleString("en")} of 10,000 workers`);
    await page.selectOption("#filter-capability", "");

    await page.click('th[data-sort="id"] button');
    await settle();
    startedAt = Date.now();
    await page.$eval("#scroller", (scroller: any) => (scroller.scrollTop = scroller.scrollHeight));
    await settle();
    measured.scrollToEndMs = Date.now() - startedAt;
    const shown = await visibleIds();
    expect(shown.at(-1)).toBe([...ids].sort().at(-1));
    expect(shown.length).toBeLessThan(80);
  });
});
