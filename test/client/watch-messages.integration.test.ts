import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import {
  WatchWorkersResponseSchema,
  WorkerEventSchema,
  WorkerEventType,
  WorkerRegistryService,
  type WatchWorkersRequest,
  type WatchWorkersResponse,
} from "../../clients/typescript/src/gen/sentinel/registry/v1/registry_service_pb.js";
import { grpcServiceDefinition } from "../../clients/typescript/src/grpc-definition.js";
import type { WorkerWatchEvent } from "../../clients/typescript/src/worker-event.js";
import { WorkerRegistryClient } from "../../clients/typescript/src/worker-registry-client.js";
import type { WatchReconnectingEvent, WatchWorkersOptions } from "../../clients/typescript/src/worker-watch.js";
import { nextWithin } from "./watch-helpers.js";

// watchWorkers over a real connection to a registry that plays scripted
// WatchWorkers messages: one event per message, several, and both in one
// stream, with a break after a batch. The real registry's batching is in
// test/integration/watch-batching.test.ts.

const event = (revision: number) =>
  create(WorkerEventSchema, {
    revision: BigInt(revision),
    type: WorkerEventType.UPDATED,
    worker: { id: "worker-1767268800123-abc123xyz", nodeId: "n", capabilities: ["coder"], maxConcurrentTasks: 1 },
    occurredAt: timestampFromMs(0),
  });
const single = (revision: number) => create(WatchWorkersResponseSchema, { event: event(revision) });
const batch = (...revisions: number[]) => create(WatchWorkersResponseSchema, { events: revisions.map(event) });

/** What one WatchWorkers call plays: its messages, then a status (or nothing: it stays open). */
interface Script {
  readonly messages: WatchWorkersResponse[];
  readonly end?: grpc.status;
}

/** A registry that serves WatchWorkers alone, one script per call, recording each request. */
class ScriptedWatchRegistry {
  readonly requests: WatchWorkersRequest[] = [];
  private readonly server = new grpc.Server();
  port = 0;

  private constructor(private readonly scripts: Script[]) {}

  static async start(scripts: Script[]): Promise<ScriptedWatchRegistry> {
    const registry = new ScriptedWatchRegistry(scripts);
    registry.server.addService(grpcServiceDefinition(WorkerRegistryService), {
      watchWorkers: (call: grpc.ServerWritableStream<WatchWorkersRequest, WatchWorkersResponse>) => {
        const script = registry.scripts[registry.requests.push(call.request) - 1];
        if (script === undefined) return call.emit("error", { code: grpc.status.FAILED_PRECONDITION, details: "no script left" });
        for (const message of script.messages) call.write(message);
        if (script.end !== undefined) call.emit("error", { code: script.end, details: `scripted ${grpc.status[script.end]}` });
      },
    });
    registry.port = await new Promise<number>((resolve, reject) =>
      registry.server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, port) => (error ? reject(error) : resolve(port))),
    );
    return registry;
  }

  stop(): void {
    this.server.forceShutdown();
  }
}

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function watchScripted(scripts: Script[], options: WatchWorkersOptions) {
  const registry = await ScriptedWatchRegistry.start(scripts);
  cleanups.push(() => registry.stop());
  const client = new WorkerRegistryClient({ address: `127.0.0.1:${registry.port}`, retry: { baseMs: 10, maxMs: 20 } });
  cleanups.push(() => client.close());
  const reconnects: WatchReconnectingEvent[] = [];
  const iterator = client
    .watchWorkers({}, { reconnectBaseMs: 1, reconnectMaxMs: 2, onReconnecting: (e) => reconnects.push(e), ...options })
    [Symbol.asyncIterator]();
  const take = async (count: number) => {
    const taken: WorkerWatchEvent[] = [];
    while (taken.length < count) taken.push(await nextWithin(iterator, `event ${taken.length + 1} of ${count}`));
    return taken.map((e) => e.revision);
  };
  return { registry, take, reconnects };
}

describe("watchWorkers reads", () => {
  it("several events per message by default: asks for 256, reports each event once, and resumes after a batch from its last event + 1", async () => {
    const { registry, take, reconnects } = await watchScripted(
      [
        { messages: [batch(5, 6, 7), single(8)], end: grpc.status.RESOURCE_EXHAUSTED },
        // A replay that starts below the resume point, inside a batch: what was reported is skipped.
        { messages: [batch(7, 8, 9, 10), batch(11)] },
      ],
      { startRevision: 5 },
    );
    expect(await take(7)).toEqual([5, 6, 7, 8, 9, 10, 11]);
    expect(registry.requests.map((r) => [Number(r.startRevision), r.maxEventsPerMessage])).toEqual([
      [5, 256],
      [9, 256],
    ]);
    expect(reconnects.map((r) => [r.error.codeName, r.resumeFrom])).toEqual([["RESOURCE_EXHAUSTED", 9]]);
  });

  it("one event per message when asked for 1, as a registry before batching sends them", async () => {
    const { registry, take } = await watchScripted([{ messages: [single(3), single(4), single(5)] }], { startRevision: 3, eventsPerMessage: 1 });
    expect(await take(3)).toEqual([3, 4, 5]);
    expect(registry.requests.map((r) => r.maxEventsPerMessage)).toEqual([1]);
  });

  it("resumes from the event after the last one reported when a batch ends the stream mid-way through the consumer's reading", async () => {
    const { registry, take } = await watchScripted(
      [
        { messages: [batch(20, 21, 22, 23)], end: grpc.status.UNAVAILABLE },
        { messages: [batch(24, 25)] },
      ],
      { startRevision: 20, eventsPerMessage: 4 },
    );
    // Whenever the status arrives, the batch before it is reported whole, and the resume starts after its last event.
    expect(await take(2)).toEqual([20, 21]);
    expect(await take(4)).toEqual([22, 23, 24, 25]);
    expect(registry.requests.map((r) => [Number(r.startRevision), r.maxEventsPerMessage])).toEqual([
      [20, 4],
      [24, 4],
    ]);
  });
});
