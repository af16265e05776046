import type { ClientDuplexStream } from "@grpc/grpc-js";
import { writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { startRegistryServer, type RegistryServer } from "../../src/app.js";
import type { WorkerEvent } from "../../src/domain/worker-events.js";
import { RawRegistryClient } from "../support/grpc-test-client.js";
import { tempDirs } from "../support/temp-dir.js";
import { ARTIFACTS_DIR, useChromium } from "./chromium.js";

// The functions below run in the page; this file is compiled without the DOM's types.
declare const document: any;
declare const window: any;
declare const requestAnimationFrame: (callback: () => void) => void;
declare const getComputedStyle: (element: unknown) => { backgroundColor: string };
declare const MutationObserver: new (callback: () => void) => { observe(target: unknown, options: Record<string, boolean>): void };

/** Set to a path (docs/dashboard.png) to refresh the README's screenshot from this run. */
const README_SCREENSHOT = process.env.DASHBOARD_README_SCREENSHOT;
const ALL = { capabilities: [], healthStatuses: [], minAvailableCapacity: 0 };

/** What one row showed. */
interface ShownRow {
  readonly health: string;
  /** The health badge's words (with its glyph). */
  readonly label: string;
  /** Highlighted as changed. */
  readonly changed: boolean;
  /** The "was …" note beside a changed health, or null. */
  readonly was: string | null;
  /** The heartbeat age as shown. */
  readonly age: string;
}

/** What the page showed after one render: recorded in the page as it happens (see {@link recordFrames}). */
interface ShownFrame {
  /** The page's Date.now() when the render's changes were observed: the same clock as the test's. */
  readonly atMs: number;
  /** Each row shown, by worker id. */
  readonly rows: Record<string, ShownRow>;
  /** The health cards' counts, by name (healthy, degraded, unhealthy, total). */
  readonly counts: Record<string, string>;
  /** The text of the latest entry of "recent changes". */
  readonly latestChange: string;
}

/**
 * Runs in the page: records each render that changes what the rows, the counts or the latest change show, as a
 * {@link ShownFrame} in `window.shownFrames`. A MutationObserver is called once a render's DOM changes are done, so
 * every state the page showed is in the record, however briefly: a test reads the record instead of catching the
 * page in a state that lasts a second (unhealthy before removal) or three (a highlight).
 */
function recordFrames(): void {
  const frames: ShownFrame[] = [];
  window.shownFrames = frames;
  let last = "";
  const capture = () => {
    const rows: Record<string, ShownRow> = {};
    for (const row of document.querySelectorAll("tr.row")) {
      const health = row.querySelector('td[data-col="health"]');
      rows[row.dataset.workerId] = {
        health: health.dataset.health,
        label: health.querySelector(".badge").textContent,
        changed: row.classList.contains("changed"),
        was: health.querySelector(".was")?.textContent ?? null,
        age: row.querySelector('td[data-col="heartbeat"]').textContent,
      };
    }
    const counts = Object.fromEntries([...document.querySelectorAll("[data-count]")].map((node: any) => [node.dataset.count, node.textContent.trim()]));
    const latestChange = document.querySelector("#changes li:first-child")?.textContent ?? "";
    const key = JSON.stringify([rows, counts, latestChange]);
    if (key === last) return;
    last = key;
    frames.push({ atMs: Date.now(), rows, counts, latestChange });
  };
  new MutationObserver(capture).observe(document.body, { subtree: true, childList: true, attributes: true, characterData: true });
  capture();
}

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

  /** Where the watch's record stands now: a test looks for the events of its own action from here on. */
  const mark = () => seen.length;

  /**
   * When the watch saw the first event matching since `since` (a {@link mark}), waiting for it if need be.
   * Only from the mark: under load a worker may have gone degraded and back before, and that older event is not the one
   * the test caused.
   */
  async function eventSeen(what: string, since: number, matches: (event: WorkerEvent) => boolean, timeoutMs = 6000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = seen.slice(since).find(({ event }) => matches(event));
      if (found) return found.atMs;
      if (Date.now() > deadline) throw new Error(`no watch event: ${what}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** Where the page's record of frames stands now: a test looks for what its own action showed from here on. */
  const frameMark = (): Promise<number> => page.evaluate(() => window.shownFrames.length as number);

  /**
   * Waits until the page has shown a frame matching `shown` since `since` (a {@link frameMark}), checks that it did
   * within a second of the registry's event, and returns that frame, so the test checks the rest of what it showed
   * then (highlight, counts) rather than what the page shows by the time the test asks.
   */
  async function expectShownWithinASecond(change: string, eventAtMs: number, since: number, shown: (frame: ShownFrame) => boolean): Promise<ShownFrame> {
    const deadline = Date.now() + 5000;
    let frame: ShownFrame | undefined;
    for (;;) {
      frame = (await page.evaluate((from) => window.shownFrames.slice(from) as ShownFrame[], since)).find(shown);
      if (frame !== undefined) break;
      if (Date.now() > deadline) throw new Error(`${change}: not shown within 5 s`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const ms = frame.atMs - eventAtMs;
    latencies.push({ change, ms });
    expect(ms, `${change}: shown ${ms} ms after the event`).toBeLessThan(1000);
    return frame;
  }

  const rowShown = (id: string) => (frame: ShownFrame) => frame.rows[id] !== undefined;
  const rowGone = (id: string) => (frame: ShownFrame) => frame.rows[id] === undefined;
  /** The row shows the health in colour (data-health drives it) and in words. */
  const rowHealth = (id: string, health: string) => (frame: ShownFrame) => frame.rows[id]?.health === health && frame.rows[id].label.includes(health);
  /** In the page, for waitForFunction: the row shows the health in colour (data-health) and in words. */
  const rowHealthNow = ([id, health]: string[]) => {
    const cell = document.querySelector(`tr.row[data-worker-id="${id}"] td[data-col="health"]`);
    return cell !== null && cell.dataset.health === health && cell.querySelector(".badge").textContent.includes(health);
  };
  const rowShownNow = (id: string) => document.querySelector(`tr.row[data-worker-id="${id}"]`) !== null;
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
  // The table recycles its <tr> elements: when the view re-sorts (up to 200 ms after a change is shown in place), the
  // element that showed one worker shows another. So every read below finds and reads in one evaluation. Never
  // page.$eval/$$eval here: they find the element in one round trip and read it in the next, and under load a re-sort
  // falls between the two (that read a healthy worker's row as the degraded one's: no highlight).
  const visibleIds = () => page.evaluate(() => [...document.querySelectorAll("tr.row")].map((row: any) => row.dataset.workerId as string));
  const column = (name: string) =>
    page.evaluate((col) => [...document.querySelectorAll(`tr.row td[data-col="${col}"]`)].map((cell: any) => cell.textContent as string), name);
  /** The text of each cell of a worker's row, or undefined when no row shows it. */
  const rowCells = (id: string) =>
    page.evaluate((workerId) => {
      const row = document.querySelector(`tr.row[data-worker-id="${workerId}"]`);
      return row === null ? undefined : [...row.querySelectorAll("td")].map((cell: any) => cell.textContent.trim() as string);
    }, id);
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
    await page.evaluate(recordFrames);
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
    expect(await page.evaluate(() => document.querySelector("#capacity-fill").style.width)).toBe(`${((100 * stats.usedCapacity) / stats.totalCapacity).toFixed(1)}%`);
    expect(await text("#success-rate")).toBe(`${(stats.successRate * 100).toFixed(1)} %`);

    const ranked = (await client.call("getWorkersForLoadBalancing", { limit: 5 })).workers;
    const top = await page.evaluate(() => [...document.querySelectorAll("#top li")].map((item: any) => [item.dataset.workerId, item.querySelector(".score").textContent.trim()]));
    expect(top).toEqual(ranked.map((r: any) => [r.worker.id, r.priority.toFixed(3)]));

    expect((await visibleIds()).sort()).toEqual([...fleet.values()].map((m) => m.id).sort());
    const row = await rowCells(worker("render-01").id);
    expect(row?.slice(1)).toEqual([
      "render-01",
      "–",
      "–",
      "gpu, render",
      "active",
      "✔healthy",
      "2 / 4",
      "95.0 %",
      "980 ms",
      ranked.find((r: any) => r.worker.id === worker("render-01").id).priority.toFixed(3),
      expect.stringMatching(/^(<1|1) s$/),
      // The registry has no tokens: anyone who reaches the page may act, as anyone may call the RPCs.
      "CordonDrain",
    ]);
  });

  it("shows a worker that registers within a second", async () => {
    const since = mark();
    const frames = await frameMark();
    const joined = await register("build-03", ["cpu", "build"], 8);
    const at = await eventSeen("build-03 registered", since, (e) => e.type === "registered" && e.worker.id === joined.id);
    const shown = await expectShownWithinASecond("registered", at, frames, rowShown(joined.id));
    expect(shown.counts.total).toBe("7");
  });

  it("shows a worker whose heartbeat stream breaks as degraded, in colour and in words, highlighted, and healthy again when it beats", async () => {
    const lost = worker("test-01");
    const since = mark();
    const frames = await frameMark();
    lost.stream!.cancel();
    lost.stream = undefined;
    // Whatever fails below, the worker beats again: left silent it would be removed, and the next tests would count it.
    onTestFinished(() => {
      if (lost.stream === undefined) openStream(lost);
    });
    const degradedAt = await eventSeen("test-01 degraded", since, (e) => e.type === "health_changed" && e.worker.id === lost.id && e.worker.healthStatus === "degraded");
    const shown = await expectShownWithinASecond("stream lost: degraded", degradedAt, frames, rowHealth(lost.id, "degraded"));

    // What the page showed with it: the change highlighted, the health before it, the count and the latest change.
    expect(shown.rows[lost.id]).toMatchObject({ changed: true, was: "was healthy" });
    expect(shown.counts.degraded).toBe("1");
    expect(shown.latestChange).toContain(lost.id);
    // Badges are rebuilt with every message: found and read in one evaluation, like the rows.
    const colour = (health: string) =>
      page.evaluate((h) => getComputedStyle(document.querySelector(`.badge[data-health="${h}"]`)).backgroundColor as string, health);
    expect(await colour("degraded")).not.toBe(await colour("healthy"));
    await page.screenshot({ path: join(ARTIFACTS_DIR, "dashboard.png"), fullPage: true });
    if (README_SCREENSHOT) await page.screenshot({ path: resolve(README_SCREENSHOT), fullPage: true });

    const beforeBeat = mark();
    const framesBeforeBeat = await frameMark();
    openStream(lost);
    const healthyAt = await eventSeen("test-01 healthy again", beforeBeat, (e) => e.type === "health_changed" && e.worker.id === lost.id && e.worker.healthStatus === "healthy");
    await expectShownWithinASecond("beats again: healthy", healthyAt, framesBeforeBeat, rowHealth(lost.id, "healthy"));
  });

  it("shows a worker that stops heartbeating as degraded, then unhealthy, and removes it once expired, each within a second", async () => {
    const silent = worker("ingest-01");
    const since = mark();
    const frames = await frameMark();
    silent.beating = false;
    // Whatever fails below, the worker leaves the fleet for good, so that the next tests count the same fleet as the page.
    onTestFinished(async () => {
      fleet.delete("ingest-01");
      await client.call("unregisterWorker", { workerId: silent.id }).catch(() => undefined);
    });
    const is = (type: string, health?: string) => (e: WorkerEvent) => e.type === type && e.worker.id === silent.id && (health === undefined || e.worker.healthStatus === health);

    const degraded = await expectShownWithinASecond("silent: degraded", await eventSeen("degraded", since, is("health_changed", "degraded")), frames, rowHealth(silent.id, "degraded"));
    // Its age is the server's, and grows; a beating worker's stays under the push period plus its interval.
    expect(degraded.rows[silent.id]!.age).toMatch(/^[12] s$/);
    expect(degraded.rows[worker("build-01").id]!.age).toMatch(/^(<1|1|2) s$/);
    expect(await page.evaluate(() => document.querySelector("#eviction").hidden)).toBe(true);

    const unhealthy = await expectShownWithinASecond("silent: unhealthy", await eventSeen("unhealthy", since, is("health_changed", "unhealthy")), frames, rowHealth(silent.id, "unhealthy"));
    expect(unhealthy.counts.unhealthy).toBe("1");
    const removed = await expectShownWithinASecond("expired: removed", await eventSeen("removed", since, is("removed")), frames, rowGone(silent.id));
    expect(removed.counts.unhealthy).toBe("0");
  });

  it("removes a worker that unregisters within a second", async () => {
    const leaving = worker("build-02");
    const since = mark();
    const frames = await frameMark();
    leaving.beating = false;
    leaving.stream!.end();
    await client.call("unregisterWorker", { workerId: leaving.id });
    fleet.delete("build-02");
    const gone = await expectShownWithinASecond("unregistered", await eventSeen("unregistered", since, (e) => e.type === "unregistered" && e.worker.id === leaving.id), frames, rowGone(leaving.id));
    expect(gone.latestChange).toContain("left");
  });

  it("filters by capability and by health", async () => {
    const idsOf = (...nodes: string[]) => nodes.map((n) => worker(n).id).sort();
    // Whatever fails below, the next test starts on the whole fleet with every worker beating.
    onTestFinished(async () => {
      const lost = worker("render-02");
      if (lost.stream === undefined) openStream(lost);
      await choose("#filter-capability", "");
      await choose("#filter-health", "");
    });
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
    await page.waitForFunction(rowShownNow, lost.id, { polling: "raf", timeout: 3000 });
    expect(await visibleIds()).toEqual([lost.id]);
    await choose("#filter-capability", "cpu");
    expect(await visibleIds()).toEqual([]);
    expect(await text("tr.no-rows")).toBe("No worker matches the filters");
    await choose("#filter-capability", "render");
    expect(await visibleIds()).toEqual([lost.id]);
    await choose("#filter-health", "healthy");
    expect(await visibleIds()).toEqual(idsOf("render-01"));

    openStream(lost);
    await page.waitForFunction(rowHealthNow, [lost.id, "healthy"], { polling: "raf", timeout: 3000 });
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
