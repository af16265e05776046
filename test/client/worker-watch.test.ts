import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { status } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import {
  WatchWorkersResponseSchema,
  WorkerEventSchema,
  WorkerEventType,
  type WorkerEvent,
} from "../../clients/typescript/src/gen/sentinel/registry/v1/registry_service_pb.js";
import { RegistryClientError } from "../../clients/typescript/src/registry-client-error.js";
import type { WorkerWatchEvent } from "../../clients/typescript/src/worker-event.js";
import type { WorkerInfo } from "../../clients/typescript/src/worker-info.js";
import {
  compileWatchOptions,
  DEFAULT_WATCH_EVENTS_PER_MESSAGE,
  eventsOfResponse,
  watchWorkerEvents,
  type WatchCall,
  type WatchReconnectingEvent,
  type WatchTransport,
  type WatchWorkersOptions,
} from "../../clients/typescript/src/worker-watch.js";

// The watch loop on a scripted transport: which revision each attempt asks
// for, how long it waits, and what reaches the consumer. The real registry is
// in watch-workers.integration.test.ts.

type Step = number | { type: WorkerEventType; revision: number } | { fail: status } | "end" | "hang";

const event = (revision: number, type = WorkerEventType.UPDATED): WorkerEvent =>
  create(WorkerEventSchema, {
    revision: BigInt(revision),
    type,
    worker: { id: "worker-1-abc", nodeId: "n", capabilities: ["coder"], maxConcurrentTasks: 1 },
    occurredAt: timestampFromMs(0),
  });

const failure = (code: status) => new RegistryClientError("watchWorkers", code, `scripted ${status[code]}`);

/** A transport whose calls play scripts, one per open(), and that records what was asked of it. */
class ScriptedTransport implements WatchTransport {
  readonly opened: number[] = [];
  /** The events per message each attempt asked for. */
  readonly perMessage: number[] = [];
  readonly cancelled: boolean[] = [];
  listings = 0;
  revisionReads = 0;

  constructor(
    private readonly scripts: Step[][],
    private readonly listing: (() => Promise<{ revision: number; workers: WorkerInfo[] }>)[] = [],
    private readonly revision: () => Promise<number> = () => Promise.resolve(0),
  ) {}

  currentRevision(): Promise<number> {
    this.revisionReads += 1;
    return this.revision();
  }

  async list(): Promise<{ revision: number; workers: WorkerInfo[] }> {
    const next = this.listing[this.listings++];
    if (next === undefined) throw new Error("no listing scripted");
    return next();
  }

  async open(startRevision: number, eventsPerMessage: number): Promise<WatchCall> {
    this.perMessage.push(eventsPerMessage);
    const index = this.opened.push(startRevision) - 1;
    const script = this.scripts[index];
    if (script === undefined) throw new Error(`no script for attempt ${index + 1} (from ${startRevision})`);
    this.cancelled[index] = false;
    let wake: () => void = () => {};
    const cancelledNow = new Promise<void>((resolve) => (wake = resolve));
    const cancelled = this.cancelled;
    return {
      cancel: () => {
        cancelled[index] = true;
        wake();
      },
      events: (async function* () {
        for (const step of script) {
          if (cancelled[index]) throw failure(status.CANCELLED);
          if (typeof step === "number") yield event(step);
          else if (step === "end") return;
          else if (step === "hang") {
            await cancelledNow;
            throw failure(status.CANCELLED);
          } else if ("fail" in step) throw failure(step.fail);
          else yield event(step.revision, step.type);
        }
        throw new Error("script ran out");
      })(),
    };
  }
}

function watch(transport: WatchTransport, options: WatchWorkersOptions = {}, signal = new AbortController().signal) {
  const sleeps: number[] = [];
  const reconnects: WatchReconnectingEvent[] = [];
  const compiled = compileWatchOptions(
    {
      random: () => 0.5,
      reconnectBaseMs: 100,
      reconnectMaxMs: 1000,
      sleep: async (ms) => void sleeps.push(ms),
      onReconnecting: (e) => reconnects.push(e),
      ...options,
    },
    signal,
  );
  return { iterator: watchWorkerEvents(transport, compiled), sleeps, reconnects };
}

async function take(iterator: AsyncIterator<WorkerWatchEvent>, count: number): Promise<WorkerWatchEvent[]> {
  const taken: WorkerWatchEvent[] = [];
  while (taken.length < count) {
    const result = await iterator.next();
    if (result.done === true) throw new Error(`ended after ${taken.length} of ${count}`);
    taken.push(result.value);
  }
  return taken;
}

const revisions = (events: WorkerWatchEvent[]) => events.map((e) => e.revision);

describe("resuming", () => {
  it("asks for the last reported revision + 1 after each break, waiting with full jitter that grows per failure and starts over once events flow", async () => {
    const transport = new ScriptedTransport([
      [5, 6, { fail: status.UNAVAILABLE }],
      [{ fail: status.UNAVAILABLE }],
      [{ fail: status.UNAVAILABLE }],
      [7, { fail: status.RESOURCE_EXHAUSTED }],
      [8, "hang"],
    ]);
    const { iterator, sleeps, reconnects } = watch(transport, { startRevision: 5 });
    expect(revisions(await take(iterator, 4))).toEqual([5, 6, 7, 8]);
    expect(transport.opened).toEqual([5, 7, 7, 7, 8]);
    // random() = 0.5 of the ceilings 100, 200, 400, and 100 again after revision 7 arrived.
    expect(sleeps).toEqual([50, 100, 200, 50]);
    expect(reconnects.map(({ attempt, delayMs, resumeFrom, error }) => [attempt, delayMs, resumeFrom, error.codeName])).toEqual([
      [1, 50, 7, "UNAVAILABLE"],
      [2, 100, 7, "UNAVAILABLE"],
      [3, 200, 7, "UNAVAILABLE"],
      [1, 50, 8, "RESOURCE_EXHAUSTED"],
    ]);
    await iterator.return();
    expect(transport.cancelled.at(-1)).toBe(true);
  });

  it("caps the wait at reconnectMaxMs however many failures in a row", async () => {
    const transport = new ScriptedTransport([...Array.from({ length: 8 }, () => [{ fail: status.UNAVAILABLE }]), [1, "hang"]]);
    const { iterator, sleeps } = watch(transport, { startRevision: 1, random: () => 0.999 });
    await take(iterator, 1);
    expect(sleeps).toEqual([99, 199, 399, 799, 999, 999, 999, 999]);
    await iterator.return();
  });

  it.each([status.CANCELLED, status.ABORTED, status.DEADLINE_EXCEEDED])("resumes after %s that it did not cause", async (code) => {
    const transport = new ScriptedTransport([[1, { fail: code }], [2, "hang"]]);
    const { iterator, reconnects } = watch(transport, { startRevision: 1 });
    expect(revisions(await take(iterator, 2))).toEqual([1, 2]);
    expect(reconnects.map((r) => r.error.code)).toEqual([code]);
    await iterator.return();
  });

  it("treats a call that ends without an error as a break, and resumes", async () => {
    const transport = new ScriptedTransport([[1, "end"], [2, "hang"]]);
    const { iterator, reconnects } = watch(transport, { startRevision: 1 });
    expect(revisions(await take(iterator, 2))).toEqual([1, 2]);
    expect(transport.opened).toEqual([1, 2]);
    expect(reconnects.map((r) => r.error.codeName)).toEqual(["UNAVAILABLE"]);
    await iterator.return();
  });

  it("never reports a revision twice, even when a replay starts below the resume point", async () => {
    const transport = new ScriptedTransport([[5, 6, { fail: status.UNAVAILABLE }], [5, 6, 7, "hang"]]);
    const { iterator } = watch(transport, { startRevision: 5 });
    expect(revisions(await take(iterator, 3))).toEqual([5, 6, 7]);
    await iterator.return();
  });

  it("skips an event type it does not know, and resumes after it rather than asking for it again", async () => {
    const transport = new ScriptedTransport([[{ type: WorkerEventType.UNSPECIFIED, revision: 1 }, { fail: status.UNAVAILABLE }], [2, "hang"]]);
    const { iterator } = watch(transport, { startRevision: 1 });
    expect(revisions(await take(iterator, 1))).toEqual([2]);
    expect(transport.opened).toEqual([1, 2]);
    await iterator.return();
  });

  it("without a start revision, starts after the registry's current one and resumes exactly even before the first event", async () => {
    const transport = new ScriptedTransport([[{ fail: status.UNAVAILABLE }], [10, "hang"]], [], () => Promise.resolve(9));
    const { iterator } = watch(transport);
    expect(revisions(await take(iterator, 1))).toEqual([10]);
    expect(transport.opened).toEqual([10, 10]);
    expect(transport.revisionReads).toBe(1);
    await iterator.return();
  });

  it("tries the revision read again when it fails with UNAVAILABLE", async () => {
    let reads = 0;
    const transport = new ScriptedTransport([[10, "hang"]], [], () => (++reads === 1 ? Promise.reject(failure(status.UNAVAILABLE)) : Promise.resolve(9)));
    const { iterator, sleeps } = watch(transport);
    expect(revisions(await take(iterator, 1))).toEqual([10]);
    expect(sleeps).toEqual([50]);
    await iterator.return();
  });
});

describe("resync", () => {
  const worker = { id: "worker-1-abc" } as WorkerInfo;

  it("answers OUT_OF_RANGE with one listing, reported as a resync, and goes on from its revision + 1 without waiting", async () => {
    const transport = new ScriptedTransport([[{ fail: status.OUT_OF_RANGE }], [41, "hang"]], [() => Promise.resolve({ revision: 40, workers: [worker] })]);
    const { iterator, sleeps, reconnects } = watch(transport, { startRevision: 5 });
    expect(await take(iterator, 2)).toMatchObject([{ type: "resync", revision: 40, workers: [worker] }, { type: "updated", revision: 41 }]);
    expect(transport.opened).toEqual([5, 41]);
    expect(sleeps).toEqual([]);
    expect(reconnects).toEqual([]);
    await iterator.return();
  });

  it("lists again after a wait when the listing fails, and reports one resync", async () => {
    const transport = new ScriptedTransport(
      [[{ fail: status.OUT_OF_RANGE }], [41, "hang"]],
      [() => Promise.reject(failure(status.UNAVAILABLE)), () => Promise.resolve({ revision: 40, workers: [] })],
    );
    const { iterator, sleeps } = watch(transport, { startRevision: 5 });
    expect((await take(iterator, 2)).map((e) => e.type)).toEqual(["resync", "updated"]);
    expect(transport.listings).toBe(2);
    expect(transport.opened).toEqual([5, 41]);
    expect(sleeps).toEqual([50]);
    await iterator.return();
  });
});

describe("ending", () => {
  it.each([status.UNAUTHENTICATED, status.PERMISSION_DENIED, status.INVALID_ARGUMENT, status.NOT_FOUND, status.INTERNAL, status.UNIMPLEMENTED])(
    "ends with the registry's error for %s, which a retry would not cure",
    async (code) => {
      const transport = new ScriptedTransport([[1, { fail: code }]]);
      const { iterator, sleeps } = watch(transport, { startRevision: 1 });
      await take(iterator, 1);
      const error = await iterator.next().then(() => undefined, (e: unknown) => e);
      expect(error).toBeInstanceOf(RegistryClientError);
      expect((error as RegistryClientError).code).toBe(code);
      expect(sleeps).toEqual([]);
      expect(transport.cancelled).toEqual([true]);
    },
  );

  it("ends cleanly when the signal aborts while it waits for an event, and cancels the call", async () => {
    const stop = new AbortController();
    const transport = new ScriptedTransport([[1, "hang"]]);
    const { iterator } = watch(transport, { startRevision: 1 }, stop.signal);
    await take(iterator, 1);
    const pending = iterator.next();
    stop.abort();
    expect(await pending).toEqual({ done: true, value: undefined });
    expect(transport.cancelled).toEqual([true]);
  });

  it("ends cleanly when the signal aborts while it waits to resume, without waiting for the sleep", async () => {
    const stop = new AbortController();
    const transport = new ScriptedTransport([[{ fail: status.UNAVAILABLE }]]);
    let slept: () => void = () => {};
    const asleep = new Promise<void>((resolve) => (slept = resolve));
    const { iterator } = watch(
      transport,
      {
        startRevision: 1,
        sleep: () => {
          slept();
          return new Promise(() => {});
        },
      },
      stop.signal,
    );
    const pending = iterator.next();
    await asleep;
    stop.abort();
    expect(await pending).toEqual({ done: true, value: undefined });
    expect(transport.opened).toEqual([1]);
  });

  it("ends cleanly when the signal aborts while it reads the registry's revision", async () => {
    const stop = new AbortController();
    let reading: () => void = () => {};
    const read = new Promise<void>((resolve) => (reading = resolve));
    const transport = new ScriptedTransport([], [], () => {
      reading();
      return new Promise(() => {});
    });
    const { iterator } = watch(transport, {}, stop.signal);
    const pending = iterator.next();
    await read;
    stop.abort();
    expect(await pending).toEqual({ done: true, value: undefined });
    expect(transport.opened).toEqual([]);
  });

  it("does not start when the signal has already aborted", async () => {
    const stop = new AbortController();
    stop.abort();
    const transport = new ScriptedTransport([[1, "hang"]]);
    const { iterator } = watch(transport, { startRevision: 1 }, stop.signal);
    expect(await iterator.next()).toEqual({ done: true, value: undefined });
    expect(transport.opened).toEqual([]);
  });

  it("cancels the call when the consumer stops iterating", async () => {
    const transport = new ScriptedTransport([[1, 2, "hang"]]);
    const { iterator } = watch(transport, { startRevision: 1 });
    for await (const event of { [Symbol.asyncIterator]: () => iterator }) {
      expect(event.revision).toBe(1);
      break;
    }
    expect(transport.cancelled).toEqual([true]);
  });
});

describe("events per message", () => {
  it("asks for 256 events per message on every attempt by default, and for what the caller chose", async () => {
    const batching = new ScriptedTransport([[1, { fail: status.UNAVAILABLE }], [2, "hang"]]);
    await take(watch(batching, { startRevision: 1 }).iterator, 2);
    expect(batching.perMessage).toEqual([256, 256]);
    const single = new ScriptedTransport([[1, "hang"]]);
    await take(watch(single, { startRevision: 1, eventsPerMessage: 1 }).iterator, 1);
    expect(single.perMessage).toEqual([1]);
  });

  it("unpacks a response of either form into its events, in order", () => {
    const one = create(WatchWorkersResponseSchema, { event: event(7) });
    const several = create(WatchWorkersResponseSchema, { events: [event(8), event(9), event(10)] });
    expect(eventsOfResponse(one).map((e) => Number(e.revision))).toEqual([7]);
    expect(eventsOfResponse(several).map((e) => Number(e.revision))).toEqual([8, 9, 10]);
    expect(eventsOfResponse(create(WatchWorkersResponseSchema, {}))).toEqual([]);
  });
});

describe("compileWatchOptions", () => {
  const signal = new AbortController().signal;

  it("reads startRevision 0 as 'from now', and fills in the documented defaults", () => {
    const compiled = compileWatchOptions({ startRevision: 0 }, signal);
    expect(compiled).toMatchObject({
      startRevision: undefined,
      eventsPerMessage: DEFAULT_WATCH_EVENTS_PER_MESSAGE,
      backoff: { baseMs: 500, maxMs: 30_000 },
      random: Math.random,
      onReconnecting: undefined,
    });
    expect(DEFAULT_WATCH_EVENTS_PER_MESSAGE).toBe(256);
  });

  it.each([0, 1001, 2.5, Number.NaN])("refuses eventsPerMessage %s", (eventsPerMessage) => {
    expect(() => compileWatchOptions({ eventsPerMessage }, signal)).toThrow(RangeError);
  });

  it.each([1, 1000])("takes eventsPerMessage %s", (eventsPerMessage) => {
    expect(compileWatchOptions({ eventsPerMessage }, signal).eventsPerMessage).toBe(eventsPerMessage);
  });

  it.each([-1, 1.5, Number.NaN])("refuses startRevision %s", (startRevision) => {
    expect(() => compileWatchOptions({ startRevision }, signal)).toThrow(RangeError);
  });

  it("refuses reconnectMaxMs below reconnectBaseMs", () => {
    expect(() => compileWatchOptions({ reconnectBaseMs: 100, reconnectMaxMs: 50 }, signal)).toThrow(RangeError);
  });
});
