/**
 * The watch fan-out's load (bench/scenarios/watch-fanout.ts): a process of
 * its own, forked and driven over IPC, in one of two roles.
 *
 * - `watchers`: opens WatchWorkers streams over node:http2, at most 100 per
 *   connection, each asking for up to `eventsPerMessage` events per message,
 *   counts every event each one receives and, on one watcher in ten, the
 *   delay from each event's occurred_at (the registry's clock, the same
 *   machine's) to its arrival. One more watch, on a connection of its own,
 *   never reads: the slow watcher, which the registry must cut off without
 *   slowing the others. Nothing is decoded with protobuf-es, so that a
 *   million events a second stay affordable here: one event per message is
 *   counted by its frame header, and a batch by walking the message's
 *   top-level fields, one `events` entry per event.
 * - `writer`: UpdateTaskCount at a fixed rate (+1 then -1 on each of a set of
 *   seeded workers, so counts stay in range), each call one "updated" event.
 *
 *   node dist/bench/watch-load.js    (forked; commands in WatchLoadCommand)
 */
import http2 from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import { DEFAULT_WATCH_EVENTS_PER_MESSAGE } from "@sentinel/worker-registry-client";
import { UpdateTaskCountRequestSchema, WatchWorkersRequestSchema } from "@sentinel/worker-registry-client/contract";
import { LatencyHistogram, type LatencySummary } from "./histogram.js";
import { eventCount, events, occurredAt } from "./watch-wire.js";
import { registryPath } from "./protocols.js";
import { seededWorkerId } from "./seed.js";

export type WatchLoadCommand =
  | {
      readonly type: "watch";
      readonly address: string;
      readonly watchers: number;
      readonly perConnection: number;
      /** max_events_per_message of every watch; 1 for one event per message. Default: the client's, DEFAULT_WATCH_EVENTS_PER_MESSAGE. */
      readonly eventsPerMessage?: number;
    }
  | { readonly type: "write"; readonly address: string; readonly perSecond: number; readonly workers: number }
  | { readonly type: "reset" }
  | { readonly type: "report" }
  | { readonly type: "exit" };

export type WatchLoadReply =
  | { readonly type: "watching"; readonly opened: number; readonly eventsPerMessage: number }
  | { readonly type: "writing" }
  | { readonly type: "reset" }
  | {
      readonly type: "report";
      readonly seconds: number;
      /** Events received by the fast watchers, all together. */
      readonly delivered: number;
      readonly delivery: LatencySummary;
      /** Fast watchers whose stream ended, and the first reason. */
      readonly fastEnded: number;
      readonly fastEndReason: string | undefined;
      /** When the slow watcher's stream ended (ms after it opened) and how; undefined while it is open. */
      readonly slowEndedAfterMs: number | undefined;
      readonly slowEndReason: string | undefined;
      /** Writer: calls answered OK and failed in the window. */
      readonly written: number;
      readonly writeErrors: number;
      readonly firstError: string | undefined;
    }
  | { readonly type: "error"; readonly message: string };

const histogram = new LatencyHistogram();
const counts = { delivered: 0, written: 0, writeErrors: 0, fastEnded: 0 };
let windowStart = performance.now();
let firstError: string | undefined;
let fastEndReason: string | undefined;
let slow: { openedAt: number; endedAfterMs: number | undefined; reason: string | undefined } | undefined;
const sessions: http2.ClientHttp2Session[] = [];

/** A gRPC frame: the 5-byte header (not compressed, length) and the message. */
function frame(body: Uint8Array): Buffer {
  const out = Buffer.alloc(5 + body.length);
  out.writeUInt32BE(body.length, 1);
  out.set(body, 5);
  return out;
}

function session(address: string): http2.ClientHttp2Session {
  const s = http2.connect(`http://${address}`);
  // A connection-level window as large as its streams' together, so no watcher's unread bytes stall the others.
  s.on("connect", () => s.setLocalWindowSize(64 * 1024 * 1024));
  s.on("error", (error) => (firstError ??= `session: ${error.message}`));
  sessions.push(s);
  return s;
}

function request(s: http2.ClientHttp2Session, path: string): http2.ClientHttp2Stream {
  return s.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers" });
}

/** The reason a stream ended, from its trailers (or headers, for trailers-only), or its error. */
function endReason(stream: http2.ClientHttp2Stream, onEnd: (reason: string) => void): void {
  let status: string | undefined;
  let message: string | undefined;
  const take = (headers: http2.IncomingHttpHeaders) => {
    if (headers["grpc-status"] !== undefined) {
      status = String(headers["grpc-status"]);
      message = decodeURIComponent(String(headers["grpc-message"] ?? ""));
    }
  };
  stream.on("response", take);
  stream.on("trailers", take);
  stream.on("error", (error: Error) => onEnd(`stream error: ${error.message}`));
  stream.on("close", () => onEnd(status === undefined ? `closed without a status (RST ${stream.rstCode})` : `grpc-status ${status}: ${message}`));
}

/**
 * A watch stream's bytes, counted as gRPC frames: one event per frame, or
 * with `batched` the events in each frame's message. With `sample`, each
 * event is also read for its occurred_at and its delay recorded.
 */
function counter(sample: boolean, batched: boolean): (chunk: Buffer) => void {
  const whole = sample || batched;
  let header = Buffer.alloc(0);
  let remaining = 0;
  let message: Buffer[] = [];
  return (chunk) => {
    let offset = 0;
    while (offset < chunk.length) {
      if (remaining === 0) {
        const need = 5 - header.length;
        header = Buffer.concat([header, chunk.subarray(offset, offset + need)]);
        offset += Math.min(need, chunk.length - offset);
        if (header.length < 5) return;
        remaining = header.readUInt32BE(1);
        header = Buffer.alloc(0);
        if (!batched) counts.delivered++;
        if (remaining === 0) continue;
      }
      const take = Math.min(remaining, chunk.length - offset);
      if (whole) message.push(chunk.subarray(offset, offset + take));
      offset += take;
      remaining -= take;
      if (remaining === 0 && whole) {
        const response = message.length === 1 ? message[0]! : Buffer.concat(message);
        if (batched) counts.delivered += eventCount(response);
        if (sample) {
          const arrivedAtMs = performance.timeOrigin + performance.now();
          for (const event of events(response)) {
            const occurredAtMs = occurredAt(event);
            if (occurredAtMs !== undefined) histogram.recordMs(Math.max(0, arrivedAtMs - occurredAtMs));
          }
        }
        message = [];
      }
    }
  };
}

async function watch(command: Extract<WatchLoadCommand, { type: "watch" }>): Promise<WatchLoadReply> {
  const path = registryPath("WatchWorkers");
  const eventsPerMessage = command.eventsPerMessage ?? DEFAULT_WATCH_EVENTS_PER_MESSAGE;
  const batched = eventsPerMessage > 1;
  const watchRequest = frame(toBinary(WatchWorkersRequestSchema, create(WatchWorkersRequestSchema, { maxEventsPerMessage: eventsPerMessage })));
  let connection: http2.ClientHttp2Session | undefined;
  const started: Promise<void>[] = [];
  for (let i = 0; i < command.watchers; i++) {
    if (i % command.perConnection === 0) connection = session(command.address);
    const stream = request(connection!, path);
    stream.end(watchRequest);
    const count = counter(i % 10 === 0, batched);
    // The registry sends a watch's headers with its first event, so "response" would wait for the writer: opened is enough.
    started.push(new Promise((resolve) => stream.once("ready", () => resolve())));
    stream.on("data", count);
    endReason(stream, (reason) => {
      counts.fastEnded++;
      fastEndReason ??= reason;
    });
  }
  // The slow watcher: its own connection, and it never reads what it is sent.
  const slowStream = request(session(command.address), path);
  slowStream.end(watchRequest);
  slowStream.pause();
  const opened = performance.now();
  slow = { openedAt: opened, endedAfterMs: undefined, reason: undefined };
  endReason(slowStream, (reason) => {
    if (slow!.endedAfterMs !== undefined) return;
    slow!.endedAfterMs = performance.now() - opened;
    slow!.reason = reason;
  });
  await Promise.all(started);
  return { type: "watching", opened: command.watchers, eventsPerMessage };
}

function write(command: Extract<WatchLoadCommand, { type: "write" }>): WatchLoadReply {
  const s = session(command.address);
  const path = registryPath("UpdateTaskCount");
  const frames = [1, -1].map((delta) =>
    Array.from({ length: command.workers }, (_, i) =>
      frame(toBinary(UpdateTaskCountRequestSchema, create(UpdateTaskCountRequestSchema, { workerId: seededWorkerId(i), delta }))),
    ),
  );
  let sent = 0;
  let inFlight = 0;
  const startedAt = performance.now();
  // Every 5 ms, the calls the rate asks for by now; at most 500 unanswered, so a stalled registry is not buried.
  const timer = setInterval(() => {
    const due = Math.floor(((performance.now() - startedAt) / 1000) * command.perSecond);
    while (sent < due && inFlight < 500) {
      const n = sent++;
      // Worker n % workers: +1 on even rounds, -1 on odd ones.
      const frame = frames[Math.floor(n / command.workers) % 2]![n % command.workers]!;
      inFlight++;
      const call = request(s, path);
      let status: string | undefined;
      call.on("response", (h) => (status = h["grpc-status"] === undefined ? status : String(h["grpc-status"])));
      call.on("trailers", (h) => (status = String(h["grpc-status"])));
      call.on("data", () => {});
      call.on("error", () => {});
      call.on("close", () => {
        inFlight--;
        if (status === "0") counts.written++;
        else {
          counts.writeErrors++;
          firstError ??= `UpdateTaskCount: grpc-status ${status ?? "none"}`;
        }
      });
      call.end(frame);
    }
    if (sent < due) sent = due; // Behind by more than 500: those calls are skipped, and show as a lower rate.
  }, 5);
  process.once("disconnect", () => clearInterval(timer));
  return { type: "writing" };
}

function report(): WatchLoadReply {
  return {
    type: "report",
    seconds: (performance.now() - windowStart) / 1000,
    delivered: counts.delivered,
    delivery: histogram.summary(),
    fastEnded: counts.fastEnded,
    fastEndReason,
    slowEndedAfterMs: slow?.endedAfterMs,
    slowEndReason: slow?.reason,
    written: counts.written,
    writeErrors: counts.writeErrors,
    firstError,
  };
}

process.on("message", (command: WatchLoadCommand) => {
  const answer = async (): Promise<WatchLoadReply> => {
    switch (command.type) {
      case "watch":
        return watch(command);
      case "write":
        return write(command);
      case "reset":
        histogram.reset();
        counts.delivered = 0;
        counts.written = 0;
        counts.writeErrors = 0;
        windowStart = performance.now();
        return { type: "reset" };
      case "report":
        return report();
      case "exit":
        for (const s of sessions) s.destroy();
        process.exit(0);
    }
  };
  answer().then(
    (reply) => process.send!(reply),
    (error: unknown) => process.send!({ type: "error", message: error instanceof Error ? error.message : String(error) } satisfies WatchLoadReply),
  );
});
