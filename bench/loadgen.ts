/**
 * The load generator: a process of its own, forked by run.ts and driven over
 * IPC (see loadgen-protocol.ts). It opens streams or unary call loops against
 * one target, at most `streamsPerConnection` streams per HTTP/2 connection,
 * each connection its own TCP connection as a fleet of worker processes would
 * have, and measures ack latency and throughput over the windows the
 * orchestrator marks with reset/report. See transport.ts for the two clients.
 */
import { create, toBinary, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import {
  AcquireWorkerRequestSchema,
  AcquireWorkerResponseSchema,
  GetWorkersForLoadBalancingRequestSchema,
  RecordTaskCompletionRequestSchema,
  RegisterWorkerRequestSchema,
  ReleaseWorkerRequestSchema,
  UpdateTaskCountRequestSchema,
} from "@sentinel/worker-registry-client/contract";
import { fromBinary } from "@bufbuild/protobuf";
import { LatencyHistogram } from "./histogram.js";
import type { LoadCommand, LoadReply, Target, UnaryOp } from "./loadgen-protocol.js";
import { decodeLeaseResponse, encodeKeepAlive, encodeLeaseGrant, ETCD_LEASE_GRANT, ETCD_LEASE_KEEPALIVE, registryPath } from "./protocols.js";
import { SEED_CAPABILITY, seededWorkerId } from "./seed.js";
import { connect, type ClientKind, type ClientStream, type Connection } from "./transport.js";

const histogram = new LatencyHistogram();
let window = { completed: 0, sent: 0, errors: 0, startedMs: performance.now() };
let totals = { sent: 0, acked: 0, errors: 0 };
let firstError: string | undefined;
let running = false;
let connections: Connection[] = [];
let streams: StreamState[] = [];
let stopPacer: (() => void) | undefined;
let unaryInFlight = 0;

function send(reply: LoadReply): void {
  process.send!(reply);
}

function noteError(text: string): void {
  window.errors++;
  totals.errors++;
  firstError ??= text;
}

/** `count` connections, spread round robin over the target's addresses (one replica after another). */
function openConnections(client: ClientKind, target: Target, count: number): Connection[] {
  const addresses = target.addresses ?? [target.address];
  return Array.from({ length: count }, (_, i) => connect(client, addresses[i % addresses.length]!, i));
}

// ---------- streams ----------

/**
 * A stream's wire format, encoded and checked by hand: the load generator
 * must cost as little CPU as possible, since it shares the machine with the
 * server it measures. Every ack is still checked: it must answer the oldest
 * heartbeat outstanding (same sequence, or for etcd same lease with TTL > 0).
 */
interface StreamProtocol {
  readonly path: string;
  /** The request bytes of the stream's next heartbeat (stream.sequence is already advanced). */
  readonly encode: (stream: StreamState) => Buffer;
  /** Whether the bytes are a valid ack of the heartbeat with this sequence. */
  readonly check: (stream: StreamState, bytes: Buffer, sequence: number) => boolean;
}

interface StreamState {
  readonly key: string;
  /** Bytes every request of this stream starts with (its id), encoded once. */
  readonly prefix: Buffer;
  call: ClientStream | undefined;
  sequence: number;
  /** Send times of heartbeats not yet acked, oldest first: a stream answers in order. */
  readonly pending: number[];
  acks: number;
  dead: boolean;
}

/** Reads a varint at `offset`; returns [value, next offset], or [-1, -1] if truncated. Values up to 2^53. */
function readVarint(bytes: Buffer, offset: number): [number, number] {
  let value = 0;
  let scale = 1;
  for (let i = offset; i < bytes.length && i < offset + 10; i++) {
    const byte = bytes[i]!;
    value += (byte & 0x7f) * scale;
    if (byte < 0x80) return [value, i + 1];
    scale *= 128;
  }
  return [-1, -1];
}

/** The value of the first varint field `field` of a message (top level), or -1. Other fields are skipped by wire type. */
function varintField(bytes: Buffer, field: number): number {
  let offset = 0;
  while (offset < bytes.length) {
    const [tag, afterTag] = readVarint(bytes, offset);
    if (afterTag < 0) return -1;
    const wireType = tag & 7;
    if (wireType === 0) {
      const [value, next] = readVarint(bytes, afterTag);
      if (tag >>> 3 === field) return value;
      offset = next;
    } else if (wireType === 2) {
      const [length, next] = readVarint(bytes, afterTag);
      offset = next + length;
    } else if (wireType === 1) offset = afterTag + 8;
    else if (wireType === 5) offset = afterTag + 4;
    else return -1;
    if (offset < 0) return -1;
  }
  return -1;
}

function writeVarint(target: Buffer, offset: number, value: number): number {
  while (value >= 0x80) {
    target[offset++] = (value & 0x7f) | 0x80;
    value = Math.floor(value / 128);
  }
  target[offset++] = value;
  return offset;
}

/** HeartbeatStreamRequest { string worker_id = 1; uint32 sequence = 2; }: the prefix is field 1, then field 2 is appended. */
const registryStream: StreamProtocol = {
  path: registryPath("HeartbeatStream"),
  encode: (stream) => {
    const out = Buffer.allocUnsafe(stream.prefix.length + 6);
    stream.prefix.copy(out, 0);
    out[stream.prefix.length] = 0x10;
    return out.subarray(0, writeVarint(out, stream.prefix.length + 1, stream.sequence));
  },
  // HeartbeatStreamResponse: sequence is field 2.
  check: (_stream, bytes, sequence) => varintField(bytes, 2) === sequence,
};

/** LeaseKeepAliveRequest { int64 ID = 1; }: the whole request is the prefix. */
const etcdStream: StreamProtocol = {
  path: ETCD_LEASE_KEEPALIVE,
  encode: (stream) => stream.prefix,
  // LeaseKeepAliveResponse { header = 1; int64 ID = 2; int64 TTL = 3; }: TTL 0 would mean the lease is gone.
  check: (stream, bytes) => {
    const response = decodeLeaseResponse(bytes);
    return String(response.id) === stream.key && response.ttl > 0n;
  },
};

function prefixFor(kind: "registry" | "echo" | "etcd", key: string, lease: bigint): Buffer {
  if (kind === "etcd") return Buffer.from(encodeKeepAlive(lease));
  const id = Buffer.from(key, "utf8");
  return Buffer.concat([Buffer.from([0x0a, id.length]), id]);
}

function heartbeat(stream: StreamState, protocol: StreamProtocol): void {
  if (stream.dead || stream.call === undefined) return;
  stream.sequence++;
  stream.pending.push(performance.now());
  window.sent++;
  totals.sent++;
  stream.call.write(protocol.encode(stream));
}

async function grantLeases(count: number): Promise<bigint[]> {
  const leases: bigint[] = new Array(count);
  let next = 0;
  const grantOne = (connection: Connection): Promise<bigint> =>
    new Promise<bigint>((resolve, reject) =>
      connection.unary(ETCD_LEASE_GRANT, encodeLeaseGrant(3600), (error, value) => {
        if (error || value === undefined) return reject(new Error(`LeaseGrant: ${error ?? "empty response"}`));
        const response = decodeLeaseResponse(value);
        if (response.error !== "") return reject(new Error(`LeaseGrant: ${response.error}`));
        resolve(response.id);
      }),
    );
  const worker = async (slot: number) => {
    const connection = connections[slot % connections.length]!;
    for (let i = next++; i < count; i = next++) leases[i] = await grantOne(connection);
  };
  await Promise.all(Array.from({ length: Math.min(256, count) }, (_, slot) => worker(slot)));
  return leases;
}

async function openStreams(command: Extract<LoadCommand, { type: "open-streams" }>): Promise<LoadReply> {
  const { target, count, mode } = command;
  const started = performance.now();
  connections = openConnections(command.client, target, Math.ceil(count / command.streamsPerConnection));
  const protocol = target.kind === "etcd" ? etcdStream : registryStream;
  const leases = target.kind === "etcd" ? await grantLeases(count) : [];
  const streamStarted = performance.now();
  running = true;
  streams = Array.from({ length: count }, (_, i) => {
    const key = target.kind === "etcd" ? String(leases[i]) : seededWorkerId(i);
    return { key, prefix: prefixFor(target.kind, key, leases[i] ?? 0n), call: undefined, sequence: 0, pending: [], acks: 0, dead: false };
  });
  streams.forEach((stream, i) => {
    const connection = connections[Math.floor(i / command.streamsPerConnection)]!;
    stream.call = connection.stream(protocol.path, {
      onMessage: (bytes) => {
        const now = performance.now();
        const sentAt = stream.pending.shift();
        if (sentAt !== undefined) histogram.recordMs(now - sentAt);
        // The ack answers the oldest heartbeat outstanding: sequence - (still pending).
        if (!protocol.check(stream, bytes, stream.sequence - stream.pending.length)) noteError(`stream ${i}: an ack that answers no outstanding heartbeat`);
        stream.acks++;
        window.completed++;
        totals.acked++;
        if (mode === "closed" && running) heartbeat(stream, protocol);
      },
      onEnd: (error) => {
        if (!stream.dead && running) noteError(`stream ${i} ended: ${error ?? "OK"}`);
        stream.dead = true;
      },
    });
    if (mode === "closed") heartbeat(stream, protocol);
  });
  if (mode === "paced") stopPacer = startPacer(streams, protocol, command.intervalMs);

  // Every stream must be answered: a server that parks streams past a limit must not look fast.
  const deadline = performance.now() + command.openTimeoutMs + (mode === "paced" ? command.intervalMs : 0);
  while (performance.now() < deadline && streams.some((s) => s.acks === 0 && !s.dead)) await sleep(50);
  const served = streams.filter((s) => s.acks > 0).length;
  return {
    type: "opened",
    opened: count,
    served,
    connections: connections.length,
    seconds: (performance.now() - (target.kind === "etcd" ? streamStarted : started)) / 1000,
    firstError,
  };
}

/** Sends each stream's heartbeat once per interval, the streams spread evenly over 10 ms slots; catches up if a tick is late. */
function startPacer(all: StreamState[], protocol: StreamProtocol, intervalMs: number): () => void {
  const slotMs = 10;
  const slots = Math.max(1, Math.round(intervalMs / slotMs));
  const bySlot: StreamState[][] = Array.from({ length: slots }, () => []);
  all.forEach((stream, i) => bySlot[i % slots]!.push(stream));
  const origin = performance.now();
  let nextSlot = 0;
  let timer: NodeJS.Timeout | undefined;
  const tick = () => {
    const due = Math.floor((performance.now() - origin) / slotMs);
    for (; nextSlot <= due; nextSlot++) for (const stream of bySlot[nextSlot % slots]!) heartbeat(stream, protocol);
    timer = setTimeout(tick, Math.max(0, origin + nextSlot * slotMs - performance.now()));
  };
  tick();
  return () => clearTimeout(timer);
}

// ---------- unary ----------

function startUnary(command: Extract<LoadCommand, { type: "start-unary" }>): LoadReply {
  connections = openConnections(command.client, command.target, command.connections);
  running = true;
  const loop = makeLoop(command.op, command.workerCount);
  for (let slot = 0; slot < command.concurrency; slot++) {
    const connection = connections[slot % connections.length]!;
    const next = () => {
      if (!running) return;
      unaryInFlight++;
      const started = performance.now();
      window.sent++;
      totals.sent++;
      loop(connection, slot, (error) => {
        unaryInFlight--;
        if (error) noteError(error);
        else {
          histogram.recordMs(performance.now() - started);
          window.completed++;
          totals.acked++;
        }
        // A failing target should not turn into a busy loop.
        if (error) setTimeout(next, 10);
        else next();
      });
    };
    next();
  }
  return { type: "started", connections: connections.length };
}

type Done = (error: string | undefined) => void;

function call<D extends DescMessage>(
  connection: Connection,
  method: string,
  schema: D,
  init: MessageInitShape<D>,
  done: (error: string | undefined, response: Buffer | undefined) => void,
): void {
  connection.unary(registryPath(method), Buffer.from(toBinary(schema, create(schema, init))), (error, response) =>
    done(error === undefined ? undefined : `${method}: ${error}`, response),
  );
}

function makeLoop(op: UnaryOp, workerCount: number): (connection: Connection, slot: number, done: Done) => void {
  const filter = { capabilities: [SEED_CAPABILITY], healthStatuses: [], minAvailableCapacity: 0 };
  let registered = 0;
  const direction = new Map<number, number>();
  switch (op) {
    case "RegisterWorker":
      return (connection, _slot, done) => {
        registered++;
        call(connection, "RegisterWorker", RegisterWorkerRequestSchema, { nodeId: `bench-${process.pid}-${registered}`, capabilities: ["general", `pool-${registered % 10}`], maxConcurrentTasks: 1000 }, done);
      };
    case "UpdateTaskCount":
      // Each slot owns one worker and alternates +1 / -1, so the count never leaves its range.
      return (connection, slot, done) => {
        const delta = direction.get(slot) === 1 ? -1 : 1;
        direction.set(slot, delta);
        call(connection, "UpdateTaskCount", UpdateTaskCountRequestSchema, { workerId: seededWorkerId(slot % workerCount), delta }, done);
      };
    case "RecordTaskCompletion":
      return (connection, slot, done) =>
        call(connection, "RecordTaskCompletion", RecordTaskCompletionRequestSchema, { workerId: seededWorkerId(slot % workerCount), success: true, durationMs: 120 }, done);
    case "GetWorkersForLoadBalancing":
      return (connection, _slot, done) => call(connection, "GetWorkersForLoadBalancing", GetWorkersForLoadBalancingRequestSchema, { filter, limit: 10 }, done);
    case "AcquireRelease":
      return (connection, _slot, done) =>
        call(connection, "AcquireWorker", AcquireWorkerRequestSchema, { filter }, (error, response) => {
          if (error || response === undefined) return done(error ?? "AcquireWorker: no response");
          const { reservationId } = fromBinary(AcquireWorkerResponseSchema, response);
          call(connection, "ReleaseWorker", ReleaseWorkerRequestSchema, { reservationId, success: true, durationMs: 50 }, done);
        });
  }
}

// ---------- control ----------

async function stop(drainMs: number): Promise<LoadReply> {
  running = false;
  stopPacer?.();
  const deadline = performance.now() + drainMs;
  const outstanding = () => streams.reduce((n, s) => n + (s.dead ? 0 : s.pending.length), 0) + unaryInFlight;
  while (performance.now() < deadline && outstanding() > 0) await sleep(20);
  const reply: LoadReply = {
    type: "stopped",
    sent: totals.sent,
    acked: totals.acked,
    missed: totals.sent - totals.acked,
    errors: totals.errors,
    served: streams.filter((s) => s.acks > 0).length,
    opened: streams.length,
    firstError,
  };
  for (const stream of streams) if (!stream.dead) stream.call?.end();
  await sleep(streams.length > 0 ? 300 : 0);
  for (const connection of connections) connection.close();
  return reply;
}

function report(): LoadReply {
  return {
    type: "report",
    completed: window.completed,
    sent: window.sent,
    errors: window.errors,
    seconds: (performance.now() - window.startedMs) / 1000,
    latency: histogram.summary(),
    firstError,
    outstanding: streams.reduce((n, s) => n + (s.dead ? 0 : s.pending.length), 0) + unaryInFlight,
  };
}

// The orchestrator is gone: nobody will read the results.
process.on("disconnect", () => process.exit(0));

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

process.on("message", (command: LoadCommand) => {
  void (async () => {
    try {
      switch (command.type) {
        case "open-streams":
          return send(await openStreams(command));
        case "start-unary":
          return send(startUnary(command));
        case "reset":
          histogram.reset();
          window = { completed: 0, sent: 0, errors: 0, startedMs: performance.now() };
          return send({ type: "reset" });
        case "report":
          return send(report());
        case "stop":
          return send(await stop(command.drainMs));
        case "exit":
          process.disconnect();
          process.exit(0);
      }
    } catch (error) {
      send({ type: "error", message: error instanceof Error ? (error.stack ?? error.message) : String(error) });
    }
  })();
});
