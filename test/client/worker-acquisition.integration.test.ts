import * as grpc from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { NoWorkerAvailableError, RegistryClientError } from "../../clients/typescript/src/registry-client-error.js";
import type { WorkerAcquisition } from "../../clients/typescript/src/worker-info.js";
import { WorkerRegistryClient } from "../../clients/typescript/src/worker-registry-client.js";
import { FakeClock } from "../support/fake-clock.js";
import { useTestRegistry } from "./registry-server.js";

// acquireWorker, releaseWorker and withWorker against the real server, on a
// fake clock: expiry times are exact, and a reservation expires when the test
// says so.

const MINUTE = 60_000;
const RESERVATION_TTL_MS = 10 * MINUTE;

const clock = new FakeClock();
// A fake clock jumps minutes in one step; the registry must not take that for a stall of its own.
const harness = useTestRegistry({ stallThresholdMs: 24 * 60 * MINUTE, reservationTtlMs: RESERVATION_TTL_MS }, { clock });
const connect = harness.connect;

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error("expected the call to fail");
    },
    (error: unknown) => error,
  );
}

/** A monotonic clock for the client that moves only when the test says. */
function manualClock() {
  let nowMs = 1_000;
  return { now: () => nowMs, advance: (ms: number) => void (nowMs += ms) };
}

describe("acquireWorker", () => {
  it("takes a slot on the best-ranked match and returns it ranked as getWorkersForLoadBalancing does, with its reservation and expiry", async () => {
    const client = connect();
    const busy = await client.registerWorker({ nodeId: "busy", capabilities: ["coder"], maxConcurrentTasks: 2 });
    await client.updateTaskCount(busy.id, 1);
    const idle = await client.registerWorker({ nodeId: "idle", capabilities: ["coder", "tester"], maxConcurrentTasks: 5 });
    await client.registerWorker({ nodeId: "painter", capabilities: ["painter"], maxConcurrentTasks: 9 });

    const acquisition = await client.acquireWorker({ capabilities: ["coder"] });
    expect(acquisition.worker).toMatchObject({ id: idle.id, nodeId: "idle", currentTasks: 1, availableCapacity: 4 });
    expect(acquisition.priority).toBe(acquisition.worker.priority);
    expect(acquisition.reservationId).toMatch(/\S/);
    expect(acquisition.expiresAt).toEqual(new Date(clock.now() + RESERVATION_TTL_MS));
    const [best] = await client.getWorkersForLoadBalancing({ capabilities: ["coder"] });
    expect(acquisition.worker).toEqual(best);
    expect((await client.getRegistryStats()).activeReservations).toBe(1);
  });

  it("fails with NoWorkerAvailableError, a RegistryClientError with RESOURCE_EXHAUSTED, when nothing matches or nothing that matches has a free slot", async () => {
    const client = connect();
    const full = await client.registerWorker({ nodeId: "full", capabilities: ["coder"], maxConcurrentTasks: 1 });
    await client.updateTaskCount(full.id, 1);
    for (const query of [{ capabilities: ["painter"] }, { capabilities: ["coder"] }]) {
      const error = await rejection(client.acquireWorker(query));
      expect(error).toBeInstanceOf(NoWorkerAvailableError);
      expect(error).toBeInstanceOf(RegistryClientError);
      expect(error).toMatchObject({ name: "NoWorkerAvailableError", code: grpc.status.RESOURCE_EXHAUSTED, codeName: "RESOURCE_EXHAUSTED", method: "acquireWorker" });
      expect((error as Error).message).not.toBe("");
    }
    expect((await client.getWorker(full.id)).currentTasks).toBe(1);
    expect((await client.getRegistryStats()).activeReservations).toBe(0);
  });
});

describe("releaseWorker", () => {
  it("frees the slot and records the outcome ('released'); a repeat changes nothing ('already-released')", async () => {
    const client = connect();
    const worker = await client.registerWorker({ nodeId: "n", capabilities: ["coder"], maxConcurrentTasks: 2 });
    const { reservationId } = await client.acquireWorker({ capabilities: ["coder"] });
    expect(await client.releaseWorker(reservationId, { success: true, durationMs: 1500 })).toBe("released");
    expect(await client.releaseWorker(reservationId, { success: false, durationMs: 9 })).toBe("already-released");
    expect(await client.getWorker(worker.id)).toMatchObject({ currentTasks: 0, metrics: { tasksCompleted: 1, tasksFailedCount: 0, averageTaskDuration: 1500 } });
    expect((await client.getRegistryStats()).activeReservations).toBe(0);
  });

  it("records the outcome of a reservation that expired, whose slot the registry had already freed ('expired')", async () => {
    const client = connect();
    const worker = await client.registerWorker({ nodeId: "n", capabilities: ["coder"], maxConcurrentTasks: 2 });
    const { reservationId, expiresAt } = await client.acquireWorker({ capabilities: ["coder"] });
    clock.advance(expiresAt.getTime() - clock.now() + 1);
    await harness.registry.server.registry.tick();
    expect((await client.getWorker(worker.id)).currentTasks).toBe(0);
    expect(await client.releaseWorker(reservationId, { success: false, durationMs: 700 })).toBe("expired");
    expect(await client.getWorker(worker.id)).toMatchObject({ currentTasks: 0, metrics: { tasksCompleted: 0, tasksFailedCount: 1, averageTaskDuration: 700 } });
  });

  it("rejects a reservation the registry does not know with NOT_FOUND, and a malformed id with INVALID_ARGUMENT", async () => {
    const client = connect();
    const unknown = await rejection(client.releaseWorker("rsv-1767225600000-aaaaaaaaaaaaaaaaaaaa", { success: true, durationMs: 1 }));
    expect(unknown).toBeInstanceOf(RegistryClientError);
    expect(unknown).toMatchObject({ code: grpc.status.NOT_FOUND, method: "releaseWorker" });
    expect((unknown as Error).message).toContain("not found");
    const malformed = await rejection(client.releaseWorker("no-such-reservation", { success: true, durationMs: 1 }));
    expect(malformed).toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
    expect((malformed as Error).message).toMatch(/^reservation_id /);
  });
});

describe("withWorker", () => {
  it("runs the task on the acquired worker, returns its result, and releases with success and the measured duration", async () => {
    const taskClock = manualClock();
    const client = connect({ clock: taskClock.now });
    const worker = await client.registerWorker({ nodeId: "n", capabilities: ["coder"], maxConcurrentTasks: 3 });
    let seen: { id: string; currentTasks: number; reservationId: string } | undefined;
    const result = await client.withWorker({ capabilities: ["coder"] }, async (ranked, acquisition) => {
      seen = { id: ranked.id, currentTasks: ranked.currentTasks, reservationId: acquisition.reservationId };
      expect((await client.getRegistryStats()).activeReservations).toBe(1);
      taskClock.advance(1234);
      return `ran on ${ranked.nodeId}`;
    });
    expect(result).toBe("ran on n");
    expect(seen).toMatchObject({ id: worker.id, currentTasks: 1 });
    expect(await client.getWorker(worker.id)).toMatchObject({ currentTasks: 0, metrics: { tasksCompleted: 1, tasksFailedCount: 0, averageTaskDuration: 1234 } });
    expect(await client.releaseWorker(seen!.reservationId, { success: true, durationMs: 1 })).toBe("already-released");
  });

  it("rethrows the task's own error after releasing with success = false", async () => {
    const taskClock = manualClock();
    const client = connect({ clock: taskClock.now });
    const worker = await client.registerWorker({ nodeId: "n", capabilities: ["coder"], maxConcurrentTasks: 3 });
    const failure = new TypeError("the task broke");
    const error = await rejection(
      client.withWorker({ capabilities: ["coder"] }, async () => {
        taskClock.advance(250);
        throw failure;
      }),
    );
    expect(error).toBe(failure);
    expect(await client.getWorker(worker.id)).toMatchObject({ currentTasks: 0, metrics: { tasksCompleted: 0, tasksFailedCount: 1, averageTaskDuration: 250 } });
  });

  it("does not run the task when no worker can take it", async () => {
    let ran = false;
    const error = await rejection(
      connect().withWorker({ capabilities: ["nobody"] }, () => {
        ran = true;
      }),
    );
    expect(error).toBeInstanceOf(NoWorkerAvailableError);
    expect(ran).toBe(false);
  });

  describe("when the release fails (here: the task removed its own worker, so the reservation is gone)", () => {
    async function removingTask(client: WorkerRegistryClient, outcome: "succeeds" | "throws") {
      await client.registerWorker({ nodeId: "n", capabilities: ["coder"], maxConcurrentTasks: 3 });
      const failure = new Error("the task failed");
      const releaseErrors: [RegistryClientError, WorkerAcquisition][] = [];
      const run = client.withWorker(
        { capabilities: ["coder"] },
        async (worker) => {
          await client.unregisterWorker(worker.id);
          if (outcome === "throws") throw failure;
          return "done";
        },
        { onReleaseError: (error, acquisition) => void releaseErrors.push([error, acquisition]) },
      );
      return { run, failure, releaseErrors };
    }

    it("still returns the task's result, and hands the release's error to onReleaseError", async () => {
      const { run, releaseErrors } = await removingTask(connect(), "succeeds");
      expect(await run).toBe("done");
      expect(releaseErrors).toHaveLength(1);
      const [error, acquisition] = releaseErrors[0]!;
      expect(error).toMatchObject({ code: grpc.status.NOT_FOUND, method: "releaseWorker" });
      expect(error.message).toContain(acquisition.reservationId);
    });

    it("still rethrows the task's own error, not the release's", async () => {
      const { run, failure, releaseErrors } = await removingTask(connect(), "throws");
      expect(await rejection(run)).toBe(failure);
      expect(releaseErrors.map(([error]) => error.codeName)).toEqual(["NOT_FOUND"]);
    });

    it("emits a process warning naming the reservation when no onReleaseError is given, or when it throws", async () => {
      const client = connect();
      for (const onReleaseError of [
        undefined,
        () => {
          throw new Error("a broken callback");
        },
      ]) {
        await client.registerWorker({ nodeId: "n", capabilities: ["coder"], maxConcurrentTasks: 3 });
        const warned = new Promise<Error>((resolve) => process.once("warning", resolve));
        let reservationId = "";
        const result = await client.withWorker(
          { capabilities: ["coder"] },
          async (worker, acquisition) => {
            reservationId = acquisition.reservationId;
            await client.unregisterWorker(worker.id);
            return 7;
          },
          { onReleaseError },
        );
        expect(result).toBe(7);
        const warning = await warned;
        expect(warning.name).toBe("RegistryClientWarning");
        expect(warning.message).toContain(`releaseWorker failed for reservation ${reservationId}`);
      }
    });
  });
});
