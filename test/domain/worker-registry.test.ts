import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { InvalidArgumentError, ShuttingDownError, TaskCountOutOfRangeError, WorkerNotFoundError } from "../../src/domain/errors.js";
import type { Logger } from "../../src/domain/logger.js";
import { openSqliteStore } from "../../src/store/sqlite-store.js";
import { FakeClock } from "../support/fake-clock.js";
import { createTestRegistry, NO_FILTER } from "../support/registry-fixture.js";

const MINUTE = 60_000;
const coder = { nodeId: "node-1", capabilities: ["coder", "tester"], maxConcurrentTasks: 5 };
/** The same registration from another node: a node_id names one live worker. */
const coderOn = (nodeId: string) => ({ ...coder, nodeId });

describe("WorkerRegistry", () => {
  const dirs: string[] = [];
  afterEach(() => dirs.splice(0).forEach((dir) => rmSync(dir, { recursive: true, force: true })));

  describe("registration", () => {
    it("returns a healthy worker with a guide-form id and empty metrics", async () => {
      const { registry, clock } = await createTestRegistry();
      const worker = await registry.registerWorker(coder);
      expect(worker.id).toMatch(/^worker-\d+-[a-z0-9]+$/);
      expect(worker).toMatchObject({
        nodeId: "node-1",
        capabilities: ["coder", "tester"],
        maxConcurrentTasks: 5,
        currentTasks: 0,
        availableCapacity: 5,
        healthStatus: "healthy",
        registeredAtMs: clock.now(),
        lastHeartbeatAtMs: clock.now(),
        metrics: { tasksCompleted: 0, tasksFailedCount: 0, averageTaskDurationMs: 0 },
      });
    });

    it("stores nothing for bad input", async () => {
      const { registry } = await createTestRegistry();
      await expect(registry.registerWorker({ ...coder, maxConcurrentTasks: 0 })).rejects.toThrow(InvalidArgumentError);
      expect(registry.getRegistryStats().totalWorkers).toBe(0);
    });
  });

  // Regression: a worker process that restarted registered afresh and its old record lived on for a TTL, idle and
  // healthy, outranking real workers; rerunning the Complete Example piled up "coder-1" records.
  describe("registering a node_id again", () => {
    it("replaces the node's old worker in one step: gone with its reservations and token, announced as replaced", async () => {
      const { registry } = await createTestRegistry();
      const old = await registry.registerWorker(coder);
      const { reservationId } = await registry.acquireWorker(NO_FILTER);
      const events: { type: string; id: string; reason?: string }[] = [];
      await registry.watch(NO_FILTER, 0, (e) => events.push({ type: e.type, id: e.worker.id, ...(e.reason === undefined ? {} : { reason: e.reason }) }));
      const renewed = await registry.registerWorker(coder);
      expect(() => registry.getWorker(old.id)).toThrow(WorkerNotFoundError);
      expect(registry.workerTokenHash(old.id)).toBeUndefined();
      expect(registry.discoverWorkers(NO_FILTER).workers.map((w) => w.id)).toEqual([renewed.id]);
      expect(registry.getRegistryStats()).toMatchObject({ totalWorkers: 1, activeReservations: 0, usedCapacity: 0 });
      await expect(registry.releaseWorker(reservationId, true, 5)).rejects.toThrow(/not found/);
      expect(events).toEqual([
        { type: "unregistered", id: old.id, reason: "replaced" },
        { type: "registered", id: renewed.id },
      ]);
      // Other nodes are untouched.
      const other = await registry.registerWorker(coderOn("node-2"));
      expect(registry.getRegistryStats().totalWorkers).toBe(2);
      expect(registry.getWorker(other.id).nodeId).toBe("node-2");
    });

    it("two registrations of one node_id at once leave exactly one worker, the later", async () => {
      const { registry } = await createTestRegistry();
      const [first, second] = await Promise.all([registry.registerWorker(coder), registry.registerWorker(coder)]);
      expect(registry.discoverWorkers(NO_FILTER).workers.map((w) => w.id)).toEqual([second.id]);
      expect(() => registry.getWorker(first.id)).toThrow(WorkerNotFoundError);
    });

    it("an unregistered worker's removal says why", async () => {
      const { registry } = await createTestRegistry();
      const worker = await registry.registerWorker(coder);
      const reasons: (string | undefined)[] = [];
      await registry.watch(NO_FILTER, 0, (e) => reasons.push(e.reason));
      await registry.unregisterWorker(worker.id);
      expect(reasons).toEqual(["unregistered"]);
    });
  });

  describe("health tiers on an injected clock", () => {
    it("goes healthy -> degraded at 10 min -> unhealthy after 15 min, and counts follow", async () => {
      const { registry, clock } = await createTestRegistry();
      const { id } = await registry.registerWorker(coder);
      clock.advance(10 * MINUTE - 1);
      expect(registry.getWorker(id).healthStatus).toBe("healthy");
      clock.advance(1);
      expect(registry.getWorker(id).healthStatus).toBe("degraded");
      expect(registry.getRegistryStats()).toMatchObject({ healthyWorkers: 0, degradedWorkers: 1, unhealthyWorkers: 0 });
      clock.advance(5 * MINUTE);
      expect(registry.getWorker(id).healthStatus).toBe("degraded");
      clock.advance(1);
      expect(registry.getWorker(id).healthStatus).toBe("unhealthy");
      expect(registry.getRegistryStats()).toMatchObject({ healthyWorkers: 0, degradedWorkers: 0, unhealthyWorkers: 1 });
    });

    it("computes health as of the read, even when the schedule has not run", async () => {
      const { registry, clock } = await createTestRegistry();
      const { id } = await registry.registerWorker(coder);
      clock.advance(11 * MINUTE);
      // No tick or cleanup has run: the answer still reflects the heartbeat's age now.
      expect(registry.getWorker(id).healthStatus).toBe("degraded");
      expect(registry.discoverWorkers({ ...NO_FILTER, healthStatuses: ["healthy"] }).workers).toHaveLength(0);
    });

    it("a heartbeat makes a degraded worker healthy again", async () => {
      const { registry, clock } = await createTestRegistry();
      const { id } = await registry.registerWorker(coder);
      clock.advance(12 * MINUTE);
      await registry.tick();
      expect(registry.heartbeat(id).healthStatus).toBe("healthy");
      expect(registry.getRegistryStats()).toMatchObject({ healthyWorkers: 1, degradedWorkers: 0 });
      clock.advance(10 * MINUTE - 1);
      expect(registry.getWorker(id).healthStatus).toBe("healthy");
    });

    it("logs each transition once, with from and to", async () => {
      const transitions: object[] = [];
      const log: Logger = {
        debug() {},
        warn() {},
        error() {},
        info: (fields, message) => {
          if (message === "worker health changed") transitions.push(fields);
        },
      };
      const { registry, clock } = await createTestRegistry({}, { log });
      const { id } = await registry.registerWorker(coder);
      for (let minute = 0; minute < 20; minute++) {
        clock.advance(MINUTE);
        await registry.tick();
      }
      expect(transitions).toEqual([
        { workerId: id, from: "healthy", to: "degraded" },
        { workerId: id, from: "degraded", to: "unhealthy" },
      ]);
    });

    it("ignores wall-clock jumps: health follows monotonic time", async () => {
      const { registry, clock } = await createTestRegistry();
      const { id } = await registry.registerWorker(coder);
      clock.jumpWall(2 * 60 * MINUTE);
      await registry.tick();
      expect(registry.getWorker(id).healthStatus).toBe("healthy");
      expect(await registry.cleanup()).toBe(0);
      clock.jumpWall(-4 * 60 * MINUTE);
      expect(registry.getWorker(id).healthStatus).toBe("healthy");
    });
  });

  describe("cleanup", () => {
    it("removes only workers past the TTL, and a heartbeat before cleanup saves a worker", async () => {
      const { registry, clock } = await createTestRegistry();
      const stale = await registry.registerWorker(coderOn("stale"));
      const saved = await registry.registerWorker(coderOn("saved"));
      clock.advance(5 * MINUTE);
      const fresh = await registry.registerWorker(coderOn("fresh"));
      clock.advance(10 * MINUTE + 1);
      await registry.tick();
      expect(registry.getWorker(saved.id).healthStatus).toBe("unhealthy");
      registry.heartbeat(saved.id);
      expect(await registry.cleanup()).toBe(1);
      expect(() => registry.getWorker(stale.id)).toThrow(WorkerNotFoundError);
      expect(registry.getWorker(saved.id).healthStatus).toBe("healthy");
      expect(registry.getWorker(fresh.id).healthStatus).toBe("degraded");
      expect(registry.getRegistryStats()).toMatchObject({ totalWorkers: 2, totalCapacity: 10 });
    });

    it("keeps unhealthy workers until a longer TTL passes", async () => {
      const { registry, clock } = await createTestRegistry({ workerTtlMs: 60 * MINUTE });
      const { id } = await registry.registerWorker(coder);
      clock.advance(30 * MINUTE);
      expect(await registry.cleanup()).toBe(0);
      expect(registry.getWorker(id).healthStatus).toBe("unhealthy");
      clock.advance(30 * MINUTE + 1);
      expect(await registry.cleanup()).toBe(1);
    });

    it("removes a large expired fleet in bounded batches", async () => {
      const { registry, clock } = await createTestRegistry({ cleanupBatchSize: 7, maxEvictionShare: 1 });
      for (let i = 0; i < 50; i++) await registry.registerWorker(coderOn(`node-${i}`));
      clock.advance(16 * MINUTE);
      expect(await registry.cleanup()).toBe(50);
      expect(registry.getRegistryStats().totalWorkers).toBe(0);
    });
  });

  describe("task counts and metrics", () => {
    it("refuses a delta that leaves 0..max and changes nothing", async () => {
      const { registry } = await createTestRegistry();
      const { id } = await registry.registerWorker(coder);
      await expect(registry.updateTaskCount(id, -1)).rejects.toThrow(TaskCountOutOfRangeError);
      await registry.updateTaskCount(id, 5);
      await expect(registry.updateTaskCount(id, 1)).rejects.toThrow(/outside 0\.\.5/);
      expect(registry.getWorker(id)).toMatchObject({ currentTasks: 5, availableCapacity: 0 });
      expect(registry.getRegistryStats()).toMatchObject({ usedCapacity: 5, availableCapacity: 0 });
    });

    it("records completions: counts, success rate and average over all durations", async () => {
      const { registry } = await createTestRegistry();
      const { id } = await registry.registerWorker(coder);
      await registry.recordTaskCompletion(id, true, 5000);
      const worker = await registry.recordTaskCompletion(id, false, 3000);
      expect(worker.metrics).toEqual({ tasksCompleted: 1, tasksFailedCount: 1, averageTaskDurationMs: 4000 });
      expect(worker.successRate).toBe(0.5);
      expect(worker.currentTasks).toBe(0);
      expect(registry.getRegistryStats()).toMatchObject({ tasksCompleted: 1, tasksFailed: 1, successRate: 0.5 });
    });

    // Regression: a worker with no completion showed success_rate 0.5, the scoring prior, where the guide's
    // completed / total has no value yet.
    it("success_rate is the observed rate, 0 before any completion; the prior lives only in the ranking score", async () => {
      const { registry } = await createTestRegistry();
      const { id } = await registry.registerWorker(coder);
      expect(registry.getWorker(id)).toMatchObject({ successRate: 0, metrics: { tasksCompleted: 0, tasksFailedCount: 0 } });
      const [ranked] = registry.getWorkersForLoadBalancing(NO_FILTER);
      expect(ranked).toMatchObject({ successScore: 0.5, worker: { id, successRate: 0 } });
      await registry.recordTaskCompletion(id, true, 1000);
      expect(registry.getWorker(id).successRate).toBe(1);
      expect(registry.getWorkersForLoadBalancing(NO_FILTER)[0]).toMatchObject({ successScore: 1, worker: { successRate: 1 } });
    });

    it("answers NOT_FOUND-class errors for unknown workers", async () => {
      const { registry } = await createTestRegistry();
      const unknown = "worker-1-missing";
      expect(() => registry.heartbeat(unknown)).toThrow(/worker worker-1-missing not found/);
      await expect(registry.updateTaskCount(unknown, 1)).rejects.toThrow(WorkerNotFoundError);
      await expect(registry.recordTaskCompletion(unknown, true, 1)).rejects.toThrow(WorkerNotFoundError);
      await expect(registry.unregisterWorker(unknown)).rejects.toThrow(WorkerNotFoundError);
    });
  });

  describe("discovery and ranking", () => {
    it("ranks the guide's worker B (0.77) above worker A (0.71)", async () => {
      const { registry } = await createTestRegistry();
      const a = await registry.registerWorker({ nodeId: "a", capabilities: ["coder"], maxConcurrentTasks: 10 });
      const b = await registry.registerWorker({ nodeId: "b", capabilities: ["coder"], maxConcurrentTasks: 5 });
      await registry.updateTaskCount(a.id, 2);
      await registry.updateTaskCount(b.id, 1);
      for (let i = 0; i < 50; i++) await registry.recordTaskCompletion(a.id, i < 45, 5000);
      for (let i = 0; i < 10; i++) await registry.recordTaskCompletion(b.id, true, 3000);
      const ranked = registry.getWorkersForLoadBalancing({ capabilities: ["coder"], healthStatuses: ["healthy", "degraded"], minAvailableCapacity: 1 });
      expect(ranked.map((r) => r.worker.nodeId)).toEqual(["b", "a"]);
      expect(ranked.map((r) => r.priority.toFixed(2))).toEqual(["0.77", "0.71"]);
    });

    it("ranks degraded workers below every healthy one, and leaves unhealthy out by default", async () => {
      const { registry, clock } = await createTestRegistry();
      const degraded = await registry.registerWorker({ nodeId: "idle-but-late", capabilities: ["coder"], maxConcurrentTasks: 10 });
      clock.advance(9 * MINUTE);
      const busy = await registry.registerWorker({ nodeId: "busy", capabilities: ["coder"], maxConcurrentTasks: 10 });
      await registry.updateTaskCount(busy.id, 9);
      const gone = await registry.registerWorker({ nodeId: "gone", capabilities: ["coder"], maxConcurrentTasks: 10 });
      clock.advance(2 * MINUTE);
      registry.heartbeat(busy.id);
      registry.heartbeat(gone.id);
      clock.advance(0);
      const ranked = registry.getWorkersForLoadBalancing(NO_FILTER);
      expect(ranked.map((r) => r.worker.nodeId)).toEqual(["gone", "busy", "idle-but-late"]);
      expect(ranked[2]!.worker.healthStatus).toBe("degraded");
      expect(ranked[2]!.priority).toBeGreaterThan(ranked[1]!.priority);
      clock.advance(5 * MINUTE);
      expect(registry.getWorkersForLoadBalancing(NO_FILTER).map((r) => r.worker.nodeId)).toEqual(["gone", "busy"]);
      expect(registry.getWorkersForLoadBalancing({ ...NO_FILTER, healthStatuses: ["unhealthy"] }).map((r) => r.worker.id)).toEqual([degraded.id]);
    });

    it("filters by every capability, health and free capacity", async () => {
      const { registry } = await createTestRegistry();
      const both = await registry.registerWorker({ nodeId: "both", capabilities: ["coder", "reviewer"], maxConcurrentTasks: 3 });
      await registry.registerWorker({ nodeId: "coder-only", capabilities: ["coder"], maxConcurrentTasks: 3 });
      const full = await registry.registerWorker({ nodeId: "full", capabilities: ["reviewer", "coder"], maxConcurrentTasks: 1 });
      await registry.updateTaskCount(full.id, 1);
      const found = registry.discoverWorkers({ capabilities: ["reviewer", "coder"], healthStatuses: ["healthy"], minAvailableCapacity: 1 });
      expect(found.workers.map((w) => w.id)).toEqual([both.id]);
      expect(registry.discoverWorkers({ ...NO_FILTER, capabilities: ["nobody"] }).workers).toEqual([]);
      expect(registry.discoverWorkers(NO_FILTER).workers).toHaveLength(3);
    });

    it("pages through discovery in id order without repeats or gaps", async () => {
      const { registry } = await createTestRegistry();
      const ids: string[] = [];
      for (let i = 0; i < 25; i++) ids.push((await registry.registerWorker(coderOn(`node-${i}`))).id);
      const seen: string[] = [];
      let token = "";
      let pages = 0;
      do {
        const page = registry.discoverWorkers(NO_FILTER, 10, token);
        seen.push(...page.workers.map((w) => w.id));
        token = page.nextPageToken;
        pages++;
      } while (token !== "");
      expect(pages).toBe(3);
      expect(seen).toEqual([...ids].sort());
    });
  });

  describe("restart", () => {
    it("keeps every acknowledged write and gives recovered workers a full window from serving start", async () => {
      const dir = mkdtempSync(join(tmpdir(), "registry-restart-"));
      dirs.push(dir);
      const path = join(dir, "registry.db");
      const clock = new FakeClock();
      const first = await createTestRegistry({}, { clock, store: openSqliteStore({ path }) });
      const worker = await first.registry.registerWorker(coder);
      await first.registry.updateTaskCount(worker.id, 2);
      await first.registry.recordTaskCompletion(worker.id, true, 1200);
      clock.advance(9 * MINUTE);
      first.registry.heartbeat(worker.id);
      await first.registry.close();
      await first.store.close();

      // Down for an hour: far past every threshold.
      clock.advance(60 * MINUTE);
      const second = await createTestRegistry({}, { clock, store: openSqliteStore({ path }) });
      const recovered = second.registry.getWorker(worker.id);
      expect(recovered).toMatchObject({ currentTasks: 2, healthStatus: "healthy", lastHeartbeatAtMs: clock.now() - 60 * MINUTE });
      expect(recovered.metrics).toEqual({ tasksCompleted: 1, tasksFailedCount: 0, averageTaskDurationMs: 1200 });
      expect(await second.registry.cleanup()).toBe(0);
      clock.advance(10 * MINUTE);
      expect(second.registry.getWorker(worker.id).healthStatus).toBe("degraded");
      clock.advance(5 * MINUTE + 1);
      expect(await second.registry.cleanup()).toBe(1);
      await second.registry.close();
      await second.store.close();
    });

    // Regression: every recovered worker used to get a fresh healthy window, so a worker silent for hours came
    // back healthy and, idle, topped the ranking. It now keeps the health it had when the registry last ran.
    it("a worker that was unhealthy when the registry last ran stays unhealthy and unranked, and is removed after the grace", async () => {
      const dir = mkdtempSync(join(tmpdir(), "registry-restart-"));
      dirs.push(dir);
      const path = join(dir, "registry.db");
      const clock = new FakeClock();
      const first = await createTestRegistry({ cleanupIntervalMs: 60 * MINUTE }, { clock, store: openSqliteStore({ path }) });
      const abandoned = await first.registry.registerWorker(coderOn("abandoned"));
      const live = await first.registry.registerWorker(coderOn("live"));
      for (let minute = 0; minute < 20; minute++) {
        clock.advance(MINUTE);
        first.registry.heartbeat(live.id);
        await first.registry.flushHeartbeats();
      }
      await first.registry.close();
      await first.store.close();

      // Down for an hour: that is nobody's silence but the registry's.
      clock.advance(60 * MINUTE);
      const second = await createTestRegistry({ maxEvictionShare: 1 }, { clock, store: openSqliteStore({ path }) });
      expect(second.registry.getWorker(abandoned.id).healthStatus).toBe("unhealthy");
      expect(second.registry.getWorker(live.id).healthStatus).toBe("healthy");
      const everyHealth = { ...NO_FILTER, healthStatuses: ["healthy", "degraded", "unhealthy"] as const };
      expect(second.registry.getWorkersForLoadBalancing(everyHealth).map((r) => r.worker.id)).toEqual([live.id]);
      await expect(second.registry.acquireWorker(everyHealth)).resolves.toMatchObject({ ranked: { worker: { id: live.id } } });
      expect(second.registry.getRegistryStats()).toMatchObject({ healthyWorkers: 1, unhealthyWorkers: 1 });
      // The grace (one heartbeat interval) holds eviction back while live workers reconnect.
      clock.advance(4 * MINUTE);
      second.registry.heartbeat(live.id);
      await second.registry.tick();
      expect(await second.registry.cleanup()).toBe(0);
      clock.advance(MINUTE + 1);
      second.registry.heartbeat(live.id);
      expect(await second.registry.cleanup()).toBe(1);
      expect(() => second.registry.getWorker(abandoned.id)).toThrow(WorkerNotFoundError);
      expect(second.registry.getWorker(live.id).healthStatus).toBe("healthy");
      await second.registry.close();
      await second.store.close();
    });

    it("a worker that was degraded when the registry last ran stays degraded and unranked until it heartbeats", async () => {
      const dir = mkdtempSync(join(tmpdir(), "registry-restart-"));
      dirs.push(dir);
      const path = join(dir, "registry.db");
      const clock = new FakeClock();
      const first = await createTestRegistry({}, { clock, store: openSqliteStore({ path }) });
      const quiet = await first.registry.registerWorker(coderOn("quiet"));
      const live = await first.registry.registerWorker(coderOn("live"));
      clock.advance(12 * MINUTE);
      first.registry.heartbeat(live.id);
      await first.registry.flushHeartbeats();
      await first.registry.close();
      await first.store.close();

      clock.advance(30 * MINUTE);
      const second = await createTestRegistry({}, { clock, store: openSqliteStore({ path }) });
      expect(second.registry.getWorker(quiet.id).healthStatus).toBe("degraded");
      expect(second.registry.getWorkersForLoadBalancing(NO_FILTER).map((r) => r.worker.id)).toEqual([live.id]);
      // No further downgrade within the grace, though its age then plus the grace passes the degraded threshold.
      clock.advance(5 * MINUTE - 1);
      await second.registry.tick();
      expect(second.registry.getWorker(quiet.id).healthStatus).toBe("degraded");
      // Heard from again: healthy and back in rotation.
      expect(second.registry.heartbeat(quiet.id).healthStatus).toBe("healthy");
      expect(second.registry.getWorkersForLoadBalancing(NO_FILTER).map((r) => r.worker.id).sort()).toEqual([live.id, quiet.id].sort());
      await second.registry.close();
      await second.store.close();
    });
  });

  it("refuses calls once closed", async () => {
    const { registry } = await createTestRegistry();
    const { id } = await registry.registerWorker(coder);
    await registry.close();
    expect(() => registry.heartbeat(id)).toThrow(ShuttingDownError);
    await expect(registry.registerWorker(coder)).rejects.toThrow(ShuttingDownError);
  });
});
