import type { ClientDuplexStream } from "@grpc/grpc-js";
import { writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startRegistryServer, type RegistryServer } from "../../src/app.js";
import type { WorkerEvent } from "../../src/domain/worker-events.js";
import { RawRegistryClient } from "../support/grpc-test-client.js";
import { tempDirs } from "../support/temp-dir.js";
import { ARTIFACTS_DIR, useChromium } from "./chromium.js";

// The functions below run in the page; this file is compiled without the DOM's types.
declare const document: any;
declare const requestAnimationFrame: (callback: () => void) => void;
declare const getComputedStyle: (element: unknown) => { backgroundColor: string };

/** Set to a path (docs/dashboard.png) to refresh the README's screenshot from this run. */
const README_SCREENSHOT = process.env.DASHBOARD_README_SCREENSHOT;
const ALL = { capabilities: [], healthStatuses: [], minAvailableCapacity: 0 };

/** A worker of the test fleet: registered over gRPC, heartbeating on its own HeartbeatStream while `beating`. */
interface FleetWorker {
  readonly id: string;
  readonly nodeId: string;
  stream: ClientDuplexStream<object, any> | undefined;
  beating: boolean;
  sequence: number;
}

describe("operator dashboard in Chromium", () => {
  const dirs = tempDirs();
  let server: RegistryServer;
  let client: RawRegistryClient;
  const chromium = useChromium();
  let page: Page;
  let beatTimer: NodeJS.Timeout;
  let stopWatch: () => void;
  const fleet = new Map<string, FleetWorker>();
  /** Every watch event, with when this process saw it: the moment a change became visible to any watcher. */
  const seen: { event: WorkerEvent; atMs: number }[] = [];
  const latencies: { change: string; ms: number }[] = [];
  const pageErrors: string[] = [];

  const worker = (nodeId: string) => fleet.get(nodeId)!;

  async function register(nodeId: string, capabilities: string[], maxConcurrentTasks: number): Promise<FleetWorker> {
    const { worker: view } = await client.call("registerWorker", { nodeId, capabilities, maxConcurrentTasks });
    const member: FleetWorker = { id: view.id, nodeId, stream: undefined, beating: true, sequence: 0 };
    fleet.set(nodeId, member);
    openStream(member);
    return member;
  }

  function openStream(member: FleetWorker): void {
    const stream = client.grpc.heartbeatStream();
    stream.on("error", () => {});
    stream.on("data", () => {});
    member.stream = stream;
    beat(member);
  }

  function beat(member: FleetWorker): void {
    if (member.beating && member.stream) member.stream.write({ workerId: member.id, sequence: ++member.sequence });
  }

  async function work(nodeId: string, outcomes: { ok: number; failed: number; durationMs: number }, tasks: number): Promise<void> {
    const { id } = worker(nodeId);
    for (let i = 0; i < outcomes.ok + outcomes.failed; i++) {
      await client.call("recordTaskCompletion", { workerId: id, success: i < outcomes.ok, durationMs: outcomes.durationMs + (i % 5) * 40 });
    }
    if (tasks > 0) await client.call("updateTaskCount", { workerId: id, delta: tasks });
  }

  /** When the watch saw the first event matching, waiting for it if need be. */
  async function eventSeen(what: string, matches: (event: WorkerEvent) => boolean, timeoutMs = 6000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = seen.find(({ event }) => matches(event));
      if (found) return found.atMs;
      if (Date.now() > deadline) throw new Error(`no watch event: ${what}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** Waits until the page shows the change, and checks it did within a second of the registry's event. */
  async function expectShownWithinASecond(change: string, eventAtMs: number, shown: (arg: any) => boolean, arg: unknown): Promise<void> {
    await page.waitForFunction(shown, arg, { polling: "raf", timeout: 5000 });
    const ms = Date.now() - eventAtMs;
    latencies.push({ change, ms });
    expect(ms, `${change}: shown ${ms} ms after the event`).toBeLessThan(1000);
  }

  const rowShown = (id: string) => document.querySelector(`tr.row[data-worker-id="${id}"]`) !== null;
  const rowGone = (id: string) => document.querySelector(`tr.row[data-worker-id="${id}"]`) === null;
  /** The row's health: in colour (data-health drives it) and in words. */
  const rowHealth = ([id, health]: string[]) => {
    const cell = document.querySelector(`tr.row[data-worker-id="${id}"] td[data-col="health"]`);
    return cell !== null && cell.dataset.health === health && cell.querySelector(".badge").textContent.includes(health);
  };
  /** Lets the page render what the last interaction or message changed: it renders on animation frames. */
  const settle = () => page.evaluate(() => new Promise<void>((done) => requestAnimationFrame(() => requestAnimationFrame(() => done()))));
  const choose = async (selector: string, value: string) => {
    await page.selectOption(selector, value);
    await settle();
  };
  const sortBy = async (name: string) => {
    await page.click(`th[data-sort="${name}"] button`);
    await settle();
  };
  const visibleIds = () => page.$$eval("tr.row", (rows: any[]) => rows.map((row) => row.dataset.workerId as string));
  const column = (name: string) => page.$$eval(`tr.row td[data-col="${name}"]`, (cells: any[]) => cells.map((cell) => cell.textContent as string));
  const text = async (selector: string) => (await page.textContent(selector))!.trim();

  beforeAll(async () => {
    const browser = chromium.browser;
    if (browser === undefined) return;
    server = await startRegistryServer({
      host: "127.0.0.1",
      port: 0,
      metricsPort: 0,
      dbPath: join(dirs.make(), "registry.db"),
      logLevel: "silent",
      // Short thresholds: a silent worker is degraded after 1.5 s, unhealthy after 2.5 s, removed after 3 s. The suggested
      // interval stays at 1 s because the eviction guard counts intake per interval on its one-second tick: with a
      // shorter interval every other window is empty, which reads as a collapse and pauses eviction for good.
      registry: { healthyThresholdMs: 1500, degradedThresholdMs: 2500, workerTtlMs: 3000, heartbeatIntervalMs: 1000, cleanupIntervalMs: 500 },
    });
    client = new RawRegistryClient(`127.0.0.1:${server.port}`);
    stopWatch = await server.registry.watch(ALL, 0, (event) => seen.push({ event, atMs: Date.now() }));

    await register("render-01", ["gpu", "render"], 4);
    await register("render-02", ["gpu", "render"], 4);
    await register("build-01", ["cpu", "build"], 8);
    await register("build-02", ["cpu", "build"], 8);
    await register("test-01", ["cpu", "test"], 2);
    await register("ingest-01", ["io", "ingest"], 16);
    beatTimer = setInterval(() => fleet.forEach(beat), 200);
    await work("render-01", { ok: 19, failed: 1, durationMs: 900 }, 2);
    await work("render-02", { ok: 12, failed: 3, durationMs: 2800 }, 3);
    await work("build-01", { ok: 30, failed: 0, durationMs: 450 }, 1);
    await work("test-01", { ok: 8, failed: 2, durationMs: 300 }, 2);
    await work("ingest-01", { ok: 10, failed: 5, durationMs: 5200 }, 4);

    page = await browser.newPage({ viewport: { width: 1280, height: 780 } });
    page.on("pageerror", (error) => pageErrors.push(error.message));
    page.on("console", (message) => message.type() === "error" && pageErrors.push(message.text()));
    await page.goto(`http://127.0.0.1:${server.metricsPort}/dashboard`);
    await page.waitForFunction(() => document.body.dataset.connection === "live" && document.querySelectorAll("tr.row").length === 6);
  });

  afterEach(() => {
    expect(pageErrors).toEqual([]);
  });

  afterAll(async () => {
    clearInterval(beatTimer);
    stopWatch?.();
    writeFileSync(join(ARTIFACTS_DIR, "latency.json"), `${JSON.stringify(latencies, null, 2)}\n`);
    fleet.forEach((member) => member.stream?.cancel());
    client?.close();
    await server?.close();
    dirs.cleanup();
  });

  it("shows counts by health, capacity used of total, the success rate, the top performers and a row per worker", async () => {
    const stats = server.registry.getRegistryStats();
    expect(await text('[data-count="healthy"]')).toBe("6");
    expect(await text('[data-count="degraded"]')).toBe("0");
    expect(await text('[data-count="unhealthy"]')).toBe("0");
    expect(await text('[data-count="total"]')).toBe("6");
    expect(await text("#capacity-text")).toBe(`${stats.usedCapacity} of ${stats.totalCapacity} slots used (${((100 * stats.usedCapacity) / stats.totalCapacity).toFixed(1)} %)`);
    expect(await page.$eval("#capacity-fill", (fill: any) => fill.style.width)).toBe(`${((100 * stats.usedCapacity) / stats.totalCapacity).toFixed(1)}%`);
    expect(await text("#success-rate")).toBe(`${(stats.successRate * 100).toFixed(1)} %`);

    const ranked = (await client.call("getWorkersForLoadBalancing", { limit: 5 })).workers;
    const top = await page.$$eval("#top li", (items: any[]) => items.map((item) => [item.dataset.workerId, item.querySelector(".score").textContent.trim()]));
    expect(top).toEqual(ranked.map((r: any) => [r.worker.id, r.priority.toFixed(3)]));

    expect((await visibleIds()).sort()).toEqual([...fleet.values()].map((m) => m.id).sort());
    const row = await page.$$eval(`tr.row[data-worker-id="${worker("render-01").id}"] td`, (cells: any[]) => cells.map((cell) => cell.textContent.trim()));
    expect(row.slice(1)).toEqual(["render-01", "gpu, render", "✔healthy", "2 / 4", "95.0 %", "980 ms", ranked.find((r: any) => r.worker.id === worker("render-01").id).priority.toFixed(3), expect.stringMatching(/^(<1|1) s$/)]);
  });

  it("shows a worker that registers within a second", async () => {
    const joined = await register("build-03", ["cpu", "build"], 8);
    const at = await eventSeen("build-03 registered", (e) => e.type === "registered" && e.worker.id === joined.id);
    await expectShownWithinASecond("registered", at, rowShown, joined.id);
    expect(await text('[data-count="total"]')).toBe("7");
  });

  it("shows a worker whose heartbeat stream breaks as degraded, in colour and in words, highlighted, and healthy again when it beats", async () => {
    const lost = worker("test-01");
    lost.stream!.cancel();
    lost.stream = undefined;
    const degradedAt = await eventSeen("test-01 degraded", (e) => e.type === "health_changed" && e.worker.id === lost.id && e.worker.healthStatus === "degraded");
    await expectShownWithinASecond("stream lost: degraded", degradedAt, rowHealth, [lost.id, "degraded"]);

    const row = `tr.row[data-worker-id="${lost.id}"]`;
    expect(await page.$eval(row, (r: any) => r.classList.contains("changed"))).toBe(true);
    expect(await text(`${row} td[data-col="health"] .was`)).toBe("was healthy");
    const colour = (health: string) => page.$eval(`.badge[data-health="${health}"]`, (badge: any) => getComputedStyle(badge).backgroundColor);
    expect(await colour("degraded")).not.toBe(await colour("healthy"));
    expect(await text('[data-count="degraded"]')).toBe("1");
    expect(await text("#changes li:first-child")).toContain(lost.id);
    await page.screenshot({ path: join(ARTIFACTS_DIR, "dashboard.png"), fullPage: true });
    if (README_SCREENSHOT) await page.screenshot({ path: resolve(README_SCREENSHOT), fullPage: true });

    openStream(lost);
    const healthyAt = await eventSeen("test-01 healthy again", (e) => e.type === "health_changed" && e.worker.id === lost.id && e.worker.healthStatus === "healthy");
    await expectShownWithinASecond("beats again: healthy", healthyAt, rowHealth, [lost.id, "healthy"]);
  });

  it("shows a worker that stops heartbeating as degraded, then unhealthy, and removes it once expired, each within a second", async () => {
    const silent = worker("ingest-01");
    silent.beating = false;
    const is = (type: string, health?: string) => (e: WorkerEvent) => e.type === type && e.worker.id === silent.id && (health === undefined || e.worker.healthStatus === health);

    await expectShownWithinASecond("silent: degraded", await eventSeen("degraded", is("health_changed", "degraded")), rowHealth, [silent.id, "degraded"]);
    // Its age is the server's, and grows; a beating worker's stays under the push period plus its interval.
    const ages = await page.$$eval("tr.row", (rows: any[]) =>
      Object.fromEntries(rows.map((r) => [r.dataset.workerId, r.querySelector('td[data-col="heartbeat"]').textContent])),
    );
    expect(ages[silent.id]).toMatch(/^[12] s$/);
    expect(await page.$eval("#eviction", (banner: any) => banner.hidden)).toBe(true);
    expect(ages[worker("build-01").id]).toMatch(/^(<1|1|2) s$/);

    await expectShownWithinASecond("silent: unhealthy", await eventSeen("unhealthy", is("health_changed", "unhealthy")), rowHealth, [silent.id, "unhealthy"]);
    expect(await text('[data-count="unhealthy"]')).toBe("1");
    await expectShownWithinASecond("expired: removed", await eventSeen("removed", is("removed")), rowGone, silent.id);
    fleet.delete("ingest-01");
    expect(await text('[data-count="unhealthy"]')).toBe("0");
  });

  it("removes a worker that unregisters within a second", async () => {
    const leaving = worker("build-02");
    leaving.beating = false;
    leaving.stream!.end();
    await client.call("unregisterWorker", { workerId: leaving.id });
    fleet.delete("build-02");
    await expectShownWithinASecond("unregistered", await eventSeen("unregistered", (e) => e.type === "unregistered" && e.worker.id === leaving.id), rowGone, leaving.id);
    expect(await text("#changes li:first-child")).toContain("left");
  });

  it("filters by capability and by health", async () => {
    const idsOf = (...nodes: string[]) => nodes.map((n) => worker(n).id).sort();
    await choose("#filter-capability", "gpu");
    expect((await visibleIds()).sort()).toEqual(idsOf("render-01", "render-02"));
    expect(await text("#shown")).toBe(`2 of ${fleet.size} workers`);
    await choose("#filter-capability", "cpu");
    expect((await visibleIds()).sort()).toEqual(idsOf("build-01", "build-03", "test-01"));

    // A worker degraded right now: its stream breaks, and health filters must find it (and only it).
    const lost = worker("render-02");
    lost.stream!.cancel();
    lost.stream = undefined;
    await choose("#filter-capability", "");
    await choose("#filter-health", "degraded");
    await page.waitForFunction(rowShown, lost.id, { polling: "raf", timeout: 3000 });
    expect(await visibleIds()).toEqual([lost.id]);
    await choose("#filter-capability", "cpu");
    expect(await visibleIds()).toEqual([]);
    expect(await text("tr.no-rows")).toBe("No worker matches the filters");
    await choose("#filter-capability", "render");
    expect(await visibleIds()).toEqual([lost.id]);
    await choose("#filter-health", "healthy");
    expect(await visibleIds()).toEqual(idsOf("render-01"));

    openStream(lost);
    await page.waitForFunction(rowHealth, [lost.id, "healthy"], { polling: "raf", timeout: 3000 });
    await choose("#filter-capability", "");
    await choose("#filter-health", "");
    expect((await visibleIds()).length).toBe(fleet.size);
  });

  it("sorts by a column, and the other way round on a second click", async () => {
    await sortBy("priority");
    const priorities = (await column("priority")).map(Number);
    expect(priorities).toEqual([...priorities].sort((a, b) => b - a));
    expect(await page.getAttribute('th[data-sort="priority"]', "aria-sort")).toBe("descending");
    const best = (await client.call("getWorkersForLoadBalancing", { limit: 1 })).workers[0].worker.id;
    expect((await visibleIds())[0]).toBe(best);

    await sortBy("priority");
    const ascending = (await column("priority")).map(Number);
    expect(ascending).toEqual([...ascending].sort((a, b) => a - b));
    expect(await page.getAttribute('th[data-sort="priority"]', "aria-sort")).toBe("ascending");

    await sortBy("node");
    const nodes = await column("node");
    expect(nodes).toEqual([...nodes].sort());
    await sortBy("node");
    expect(await column("node")).toEqual([...nodes].reverse());

    await sortBy("tasks");
    const load = (await column("tasks")).map((cell) => cell.split(" / ").map(Number)).map(([used, max]) => used! / max!);
    expect(load).toEqual([...load].sort((a, b) => b - a));

    await sortBy("id");
    const ids = await visibleIds();
    expect(ids).toEqual([...ids].sort());
  });
});
