import type { ClientDuplexStream, ClientReadableStream, StatusObject } from "@grpc/grpc-js";
import { join } from "node:path";
import { startRegistryServer, type RegistryServer, type ServeOptions } from "../../src/app.js";
import type { WorkerEvent } from "../../clients/typescript/src/gen/sentinel/registry/v1/registry_service_pb.js";
import type { RawRegistryClient } from "./grpc-test-client.js";
import type { tempDirs } from "./temp-dir.js";

/** A registry on a free loopback port, its database (unless given) in a new directory of `dirs`. */
export function startWatchRegistry(
  dirs: ReturnType<typeof tempDirs>,
  options: { readonly registry?: ServeOptions["registry"]; readonly dbPath?: string; readonly metricsPort?: number } = {},
): Promise<RegistryServer> {
  const { registry = {}, dbPath = join(dirs.make(), "registry.db"), metricsPort } = options;
  return startRegistryServer({ host: "127.0.0.1", port: 0, dbPath, logLevel: "silent", registry, metricsPort });
}

/** What a watch test compares of an event: revision, type, worker and the fields that change. */
export const eventSummary = (event: WorkerEvent) => ({
  revision: Number(event.revision),
  type: event.type,
  workerId: event.worker?.id,
  currentTasks: event.worker?.currentTasks,
  tasksCompleted: event.worker?.metrics?.tasksCompleted,
  health: event.worker?.healthStatus,
  previous: event.previousHealthStatus,
});

/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Polls `check` until it returns a value other than undefined/false, or rejects after `timeoutMs` naming `what`. */
export async function waitUntil<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs: number, everyMs = 20): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** An open WatchWorkers call and what it has delivered so far. */
export interface Watch {
  readonly call: ClientReadableStream<any>;
  /** Every event received, in arrival order (only while `reading`), unpacked from `event` or `events`. */
  readonly events: WorkerEvent[];
  /** Every message received, as it came: one `event`, or several `events` for a batching watch. */
  readonly messages: WatchMessage[];
  /** performance.now() when each event arrived, parallel to `events`. */
  readonly arrivals: number[];
  /** The call's final status (the error event is swallowed). */
  readonly done: Promise<StatusObject>;
  /** Resolves to the first event received (now or later) that matches, or rejects after `timeoutMs`. */
  waitFor(what: string, match: (event: WorkerEvent) => boolean, timeoutMs?: number): Promise<WorkerEvent>;
  /** Attaches the recording 'data' listener to a watch opened with `read: false`. */
  startReading(): void;
  /** Cancels the call and stops recording; returns the events recorded until then. */
  cancel(): WorkerEvent[];
}

/** A WatchWorkers response as the generic client decodes it. */
export interface WatchMessage {
  readonly event?: WorkerEvent;
  readonly events: WorkerEvent[];
}

/**
 * Opens WatchWorkers on the generic client. With `read: false` no data
 * listener is attached: the stream stays paused, and once its buffer is full
 * the client stops taking messages off the connection: a watcher that never
 * reads. Attach a 'data' listener later to drain it.
 */
export function openWatch(client: RawRegistryClient, request: object, options: { read?: boolean } = {}): Watch {
  const call = (client.grpc as unknown as { watchWorkers(request: object): ClientReadableStream<any> }).watchWorkers(request);
  const events: WorkerEvent[] = [];
  const messages: WatchMessage[] = [];
  const arrivals: number[] = [];
  let recording = true;
  call.on("error", () => {});
  const done = new Promise<StatusObject>((resolve) => call.on("status", resolve));
  const record = (response: WatchMessage) => {
    if (!recording) return;
    messages.push(response);
    const arrival = performance.now();
    for (const event of response.event === undefined ? response.events : [response.event, ...response.events]) {
      events.push(event);
      arrivals.push(arrival);
    }
  };
  if (options.read !== false) call.on("data", record);
  // grpc-js keeps taking messages off the connection into an unbounded list until the stream's
  // first _read; one read(0) lets it fill the stream's 16-message buffer and then stop reading,
  // so HTTP/2 flow control pushes back on the server as it would for a stuck consumer.
  else call.read(0);
  return {
    call,
    events,
    messages,
    arrivals,
    done,
    waitFor(what, match, timeoutMs = 3000) {
      return waitUntil(`watch event: ${what}`, () => events.find(match), timeoutMs, 5);
    },
    startReading() {
      call.on("data", record);
    },
    cancel() {
      recording = false;
      call.cancel();
      return events;
    },
  };
}

/** A heartbeat stream with its replies and final status. */
export interface Heartbeats {
  readonly stream: ClientDuplexStream<object, any>;
  readonly replies: any[];
  readonly done: Promise<StatusObject>;
  /** Sends one heartbeat and resolves to its reply. */
  beat(): Promise<any>;
  /** Sends one heartbeat without waiting for its reply. */
  send(): void;
}

/** Opens HeartbeatStream for `workerId` on the client's channel. */
export function openHeartbeats(client: RawRegistryClient, workerId: string): Heartbeats {
  const stream = client.grpc.heartbeatStream();
  const replies: any[] = [];
  const waiting = new Map<number, (reply: any) => void>();
  let sequence = 0;
  stream.on("data", (reply: any) => {
    replies.push(reply);
    waiting.get(reply.sequence)?.(reply);
    waiting.delete(reply.sequence);
  });
  stream.on("error", () => {});
  const done = new Promise<StatusObject>((resolve) => stream.on("status", resolve));
  return {
    stream,
    replies,
    done,
    beat() {
      const mine = ++sequence;
      const reply = new Promise<any>((resolve, reject) => {
        waiting.set(mine, resolve);
        void done.then((status) => reject(new Error(`heartbeat stream ended (${status.code} ${status.details}) before reply ${mine}`)));
      });
      stream.write({ workerId, sequence: mine });
      return reply;
    },
    send() {
      stream.write({ workerId, sequence: ++sequence });
    },
  };
}

/** Revisions of events as numbers. */
export const revisions = (events: readonly WorkerEvent[]) => events.map((event) => Number(event.revision));

/** True when the numbers strictly increase. */
export const strictlyIncreasing = (values: readonly number[]) => values.every((value, i) => i === 0 || value > values[i - 1]!);

/**
 * The slow-watcher scenario: a watcher that never reads and one that does, each on a connection of its
 * own, from the next revision, while four workers (node ids `${nodePrefix}-0`…) each take
 * `writesPerWorker` writes, one at a time. `request` is added to both watch requests. `dropped` is how
 * many events had been written when the registry was first seen holding one watcher (-1: never).
 */
export async function outpaceSlowWatcher(
  clients: { readonly writer: RawRegistryClient; readonly slow: RawRegistryClient; readonly reader: RawRegistryClient },
  registry: { readonly watcherCount: number },
  options: { readonly nodePrefix: string; readonly capability: string; readonly writesPerWorker: number; readonly request?: object },
): Promise<{ slow: Watch; reader: Watch; workers: Array<{ id: string }>; start: number; total: number; dropped: number }> {
  const { writer } = clients;
  const workers = await Promise.all(
    Array.from({ length: 4 }, async (_, i) =>
      (await writer.call("registerWorker", { nodeId: `${options.nodePrefix}-${i}`, capabilities: [options.capability], maxConcurrentTasks: 10_000 })).worker as { id: string },
    ),
  );
  const start = Number((await writer.call("getRegistryStats")).revision) + 1;
  const slow = openWatch(clients.slow, { startRevision: BigInt(start), ...options.request }, { read: false });
  // A control: a watcher on its own connection that does read sees every event and stays.
  const reader = openWatch(clients.reader, { startRevision: BigInt(start), ...options.request });
  await waitUntil("both watchers to subscribe", () => registry.watcherCount === 2, 2000);
  let dropped = -1;
  await Promise.all(
    workers.map(async (worker) => {
      for (let i = 0; i < options.writesPerWorker; i++) {
        if (i % 2 === 0) await writer.call("updateTaskCount", { workerId: worker.id, delta: 1 });
        else await writer.call("recordTaskCompletion", { workerId: worker.id, success: true, durationMs: 1 });
        if (dropped < 0 && registry.watcherCount === 1) dropped = Number((await writer.call("getRegistryStats")).revision) - start + 1;
      }
    }),
  );
  return { slow, reader, workers, start, total: workers.length * options.writesPerWorker, dropped };
}
