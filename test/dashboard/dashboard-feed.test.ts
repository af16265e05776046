import { Registry } from "prom-client";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { DashboardFeed } from "../../src/dashboard/dashboard-feed.js";
import { createDashboardRoutes } from "../../src/dashboard/dashboard-routes.js";
import { silentLogger } from "../../src/domain/logger.js";
import { DEFAULT_SCORING } from "../../src/domain/registry-options.js";
import type { WorkerRegistry } from "../../src/domain/worker-registry.js";
import { startMetricsServer, type MetricsServer } from "../../src/metrics/metrics-server.js";
import { openSqliteStore } from "../../src/store/sqlite-store.js";
import type { FakeClock } from "../support/fake-clock.js";
import { createTestRegistry, NO_FILTER } from "../support/registry-fixture.js";
import { tempDirs } from "../support/temp-dir.js";
import { SseReader, type SseMessage } from "./sse-reader.js";

const MINUTE = 60_000;
const THRESHOLDS = { healthyThresholdMs: 10 * MINUTE, degradedThresholdMs: 15 * MINUTE, heartbeatIntervalMs: 5 * MINUTE };

describe("the dashboard feed's top performers", () => {
  let registry: WorkerRegistry | undefined;
  let clock: FakeClock;
  let server: MetricsServer | undefined;
  const readers: SseReader[] = [];
  const dirs = tempDirs();
  afterAll(() => dirs.cleanup());

  afterEach(async () => {
    readers.splice(0).forEach((reader) => reader.close());
    await server?.close();
    await registry?.close();
    server = registry = undefined;
  });

  /** A registry on a fake clock (a worker expires after an hour), with the dashboard on a metrics server that ticks every 50 ms. */
  async function start(topPerformers?: number): Promise<void> {
    const created = await createTestRegistry({ workerTtlMs: 60 * MINUTE });
    await serve(created.registry, created.clock, topPerformers);
  }

  async function serve(served: WorkerRegistry, servedClock: FakeClock, topPerformers?: number): Promise<void> {
    registry = served;
    clock = servedClock;
    const routes = createDashboardRoutes({
      registry,
      scoring: DEFAULT_SCORING,
      thresholds: THRESHOLDS,
      clock,
      log: silentLogger,
      feed: { tickMs: 50, eventBatchMs: 10, ...(topPerformers === undefined ? {} : { topPerformers }) },
    });
    server = await startMetricsServer({ host: "127.0.0.1", port: 0, registry: new Registry(), log: silentLogger, routes });
  }

  async function open(): Promise<SseReader> {
    const reader = await SseReader.open(`http://127.0.0.1:${server!.port}/dashboard/events`);
    readers.push(reader);
    return reader;
  }

  async function register(nodeId: string, maxConcurrentTasks: number, tasks = 0): Promise<string> {
    const { id } = await registry!.registerWorker({ nodeId, capabilities: ["cpu"], maxConcurrentTasks });
    if (tasks > 0) await registry!.updateTaskCount(id, tasks);
    return id;
  }

  /** The ids GetWorkersForLoadBalancing ranks first, in its order. */
  const ranked = (limit: number) => registry!.getWorkersForLoadBalancing(NO_FILTER, limit).map((r) => r.worker.id);
  const healthOf = (id: string) => registry!.getWorker(id).healthStatus;

  it("names the best workers in GetWorkersForLoadBalancing's order (health tier, then priority, then fewest tasks), never an unhealthy one", async () => {
    await start(10);
    const silent = await register("silent", 16);
    clock.advance(4 * MINUTE);
    // Idle and large, with the best priority of the fleet, but degraded by the end: it ranks below every healthy worker.
    const degraded = await register("degraded", 16);
    const idle = await register("idle", 4);
    // The same priority (half their slots free, no completion yet): the one with fewer current tasks ranks first.
    const halfOfFour = await register("half-of-four", 4, 2);
    const halfOfTwo = await register("half-of-two", 2, 1);
    const busy = await register("busy", 4, 3);
    await registry!.recordTaskCompletion(busy, false, 9000);
    clock.advance(12 * MINUTE);
    for (const id of [idle, halfOfFour, halfOfTwo, busy]) registry!.heartbeat(id);
    await registry!.tick();
    expect([silent, degraded, idle].map(healthOf)).toEqual(["unhealthy", "degraded", "healthy"]);
    const priority = new Map(registry!.getWorkersForLoadBalancing(NO_FILTER, 10).map((r) => [r.worker.id, r.priority]));
    expect(priority.get(degraded)).toBeGreaterThan(priority.get(busy)!);
    expect(priority.get(halfOfFour)).toBe(priority.get(halfOfTwo));

    const reader = await open();
    const snapshot = await reader.nextNamed("snapshot");
    expect(snapshot.data.topPerformers).toEqual([idle, halfOfTwo, halfOfFour, busy, degraded]);
    expect(snapshot.data.topPerformers).toEqual(ranked(10));

    // Filling the best worker moves it down: the next batch of events names the new order.
    await registry!.updateTaskCount(idle, 4);
    const events = await reader.until((m) => m.name === "events" && m.data.events.some((e: any) => e.worker.id === idle));
    expect(events.data.topPerformers).toEqual(ranked(10));
    expect(events.data.topPerformers[0]).toBe(halfOfTwo);
    expect(events.data.topPerformers).toContain(idle);
    expect((await reader.nextNamed("tick")).data.topPerformers).toEqual(ranked(10));
  });

  it("names at most `topPerformers` workers (5 unless told), every one already sent to the page", async () => {
    await start();
    for (let i = 0; i < 7; i++) await register(`node-${i}`, 2 + i, 1);
    const reader = await open();
    const snapshot = await reader.nextNamed("snapshot");
    expect(snapshot.data.topPerformers).toEqual(ranked(5));
    expect(snapshot.data.topPerformers).toHaveLength(5);

    // A newcomer better than all: the message naming it comes after (or with) the event that brings it.
    const known = new Set<string>(snapshot.data.workers.map((w: any) => w.id));
    const best = await register("best", 100);
    const seen: SseMessage[] = [];
    await reader.until((m) => {
      seen.push(m);
      if (m.name === "events") for (const e of m.data.events) known.add(e.worker.id);
      return m.data.topPerformers?.includes(best) === true;
    });
    for (const message of seen) for (const id of message.data.topPerformers) expect(known.has(id), `${message.name} names ${id}`).toBe(true);
    expect(ranked(5)[0]).toBe(best);
  });

  // Regression: the page ranked every worker that was not unhealthy, so a worker recovered degraded, which the registry
  // keeps out of rotation until it heartbeats, showed among the top performers.
  it("leaves out a worker the registry keeps out of rotation, and names it once it is back", async () => {
    const dir = dirs.make();
    const path = join(dir, "registry.db");
    const first = await createTestRegistry({}, { store: openSqliteStore({ path }) });
    const quiet = await first.registry.registerWorker({ nodeId: "quiet", capabilities: ["cpu"], maxConcurrentTasks: 16 });
    const live = await first.registry.registerWorker({ nodeId: "live", capabilities: ["cpu"], maxConcurrentTasks: 2 });
    first.clock.advance(12 * MINUTE);
    first.registry.heartbeat(live.id);
    await first.registry.flushHeartbeats();
    await first.registry.close();
    await first.store.close();
    first.clock.advance(30 * MINUTE);
    const second = await createTestRegistry({}, { clock: first.clock, store: openSqliteStore({ path }) });
    await serve(second.registry, second.clock);

    const reader = await open();
    const snapshot = await reader.nextNamed("snapshot");
    expect(snapshot.data.workers.find((w: any) => w.id === quiet.id)).toMatchObject({ health: "degraded" });
    expect(snapshot.data.topPerformers).toEqual([live.id]);
    expect(snapshot.data.topPerformers).toEqual(ranked(5));

    second.registry.heartbeat(quiet.id);
    const back = await reader.until((m) => m.name !== "snapshot" && m.data.topPerformers.includes(quiet.id));
    expect(back.data.topPerformers).toEqual(ranked(5));
    await server!.close();
    await second.registry.close();
    await second.store.close();
    server = registry = undefined;
  });

  it("refuses a count below 1, which the registry would read as its default limit", async () => {
    const { registry: own, clock: ownClock } = await createTestRegistry();
    registry = own;
    expect(() => new DashboardFeed(own, DEFAULT_SCORING, THRESHOLDS, ownClock, silentLogger, { topPerformers: 0 })).toThrow(
      "topPerformers must be an integer of at least 1, got 0",
    );
  });
});
