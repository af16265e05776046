import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import {
  HealthStatus,
  HeartbeatStreamRequestSchema,
  HeartbeatStreamResponseSchema,
  type HealthStatus as ProtoHealthStatus,
  type HeartbeatStreamResponse,
} from "@sentinel/worker-registry-client/contract";

/**
 * The heartbeat stream's two messages, by hand, on the hot path; everything
 * else is protobuf-es's. protobuf-es encodes and decodes by reflection, which
 * cost a heartbeat more than the rest of the registry together (profiled:
 * 29% of the server's CPU at 100 streams). The result is the same bytes
 * protobuf-es writes, in the same field order (test/transport/heartbeat-codec.test.ts
 * checks both directions against protobuf-es for many inputs).
 *
 * - Requests: the shape every client sends (`worker_id` then `sequence`,
 *   either absent, an ASCII id) is read directly; anything else (unknown
 *   fields, repeated fields, non-ASCII, a sequence over 5 bytes) goes to
 *   protobuf-es, so every input decodes exactly as it would there.
 * - Acks: each stream's constant part (its `worker_id`) is encoded once, the
 *   health and the interval once per value, and only `sequence`,
 *   `server_time` and, while the worker drains, `drain_requested` and
 *   `drain_deadline` per ack. A time protobuf-es would encode differently
 *   (before 1970, or not a whole millisecond) goes through protobuf-es.
 */

/** What the server reads of a heartbeat (a HeartbeatStreamRequest has both fields). */
export interface HeartbeatBeat {
  readonly workerId: string;
  readonly sequence: number;
}

/** Decodes a HeartbeatStreamRequest. @throws as protobuf-es's fromBinary does, for bytes that are no such message. */
export function decodeHeartbeat(bytes: Buffer): HeartbeatBeat {
  const end = bytes.length;
  let pos = 0;
  let workerId = "";
  let sequence = 0;
  if (pos < end && bytes[pos] === 0x0a) {
    const length = bytes[pos + 1];
    // A one-byte length (ids are far shorter than 128), all of it ASCII, so latin1 and UTF-8 read the same.
    if (length === undefined || length >= 0x80 || pos + 2 + length > end) return fromBinary(HeartbeatStreamRequestSchema, bytes);
    const start = pos + 2;
    pos = start + length;
    for (let i = start; i < pos; i++) if (bytes[i]! >= 0x80) return fromBinary(HeartbeatStreamRequestSchema, bytes);
    workerId = bytes.toString("latin1", start, pos);
  }
  if (pos < end && bytes[pos] === 0x10) {
    pos++;
    let shift = 0;
    for (;;) {
      const byte = bytes[pos++];
      // Five bytes hold any uint32; a longer or truncated varint is protobuf-es's to judge.
      if (byte === undefined || (shift === 28 && byte > 0x0f)) return fromBinary(HeartbeatStreamRequestSchema, bytes);
      sequence += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) break;
      shift += 7;
    }
  }
  return pos === end ? { workerId, sequence } : fromBinary(HeartbeatStreamRequestSchema, bytes);
}

/** What an ack carries (the arguments of {@link HeartbeatAckEncoder.encode}). */
export interface HeartbeatAckFields {
  readonly sequence: number;
  readonly healthStatus: ProtoHealthStatus;
  readonly serverTimeMs: number;
  readonly nextHeartbeatIntervalMs: number;
  /** Wall-clock ms; null unless the worker drains. */
  readonly drainDeadlineMs: number | null;
}

/** The part of every ack of one stream that never changes: its worker_id (field 1), encoded once per stream. */
export interface AckPrefix {
  readonly workerId: string;
  readonly bytes: Uint8Array;
}

/** Field 3, health_status, for each value, encoded once (UNSPECIFIED, the default, is left out). */
const HEALTH_FIELDS: readonly Uint8Array[] = (() => {
  const fields: Uint8Array[] = [];
  for (const healthStatus of [HealthStatus.UNSPECIFIED, HealthStatus.HEALTHY, HealthStatus.DEGRADED, HealthStatus.UNHEALTHY]) {
    fields[healthStatus] = toBinary(HeartbeatStreamResponseSchema, create(HeartbeatStreamResponseSchema, { healthStatus }));
  }
  return fields;
})();

/**
 * Encodes heartbeat acks: one encoder per server, shared by its streams,
 * which also keeps the interval's bytes (the same for every ack until the
 * interval changes). {@link encode} returns a Buffer of its own, which the
 * HeartbeatStream serializer ({@link serializeHeartbeatAck}) passes through
 * as it is.
 */
export class HeartbeatAckEncoder {
  private interval: { readonly ms: number; readonly bytes: Uint8Array } | undefined;

  /** The stream's constant part, for {@link encode}. */
  prefix(workerId: string): AckPrefix {
    return { workerId, bytes: toBinary(HeartbeatStreamResponseSchema, create(HeartbeatStreamResponseSchema, { workerId })) };
  }

  /** The ack's bytes, as protobuf-es's toBinary writes them (arguments rather than an object: nothing to allocate but the bytes). */
  encode(
    stream: AckPrefix,
    sequence: number,
    healthStatus: ProtoHealthStatus,
    serverTimeMs: number,
    nextHeartbeatIntervalMs: number,
    drainDeadlineMs: number | null,
  ): Buffer {
    const health = HEALTH_FIELDS[healthStatus];
    if (health === undefined || !wholeMsSince1970(serverTimeMs) || (drainDeadlineMs !== null && !wholeMsSince1970(drainDeadlineMs)) || !isUint32(sequence)) {
      const fields = { sequence, healthStatus, serverTimeMs, nextHeartbeatIntervalMs, drainDeadlineMs };
      return Buffer.from(toBinary(HeartbeatStreamResponseSchema, ackMessage(stream.workerId, fields)));
    }
    if (this.interval?.ms !== nextHeartbeatIntervalMs) {
      const nextHeartbeatInterval = durationFromMs(nextHeartbeatIntervalMs);
      this.interval = { ms: nextHeartbeatIntervalMs, bytes: toBinary(HeartbeatStreamResponseSchema, create(HeartbeatStreamResponseSchema, { nextHeartbeatInterval })) };
    }
    const prefix = stream.bytes;
    const interval = this.interval.bytes;
    const serverTime = timestampLength(serverTimeMs);
    const drain = drainDeadlineMs === null ? 0 : timestampLength(drainDeadlineMs);
    const size =
      prefix.length +
      (sequence === 0 ? 0 : 1 + varintLength(sequence)) +
      health.length +
      2 +
      serverTime +
      interval.length +
      (drainDeadlineMs === null ? 0 : 2 + 2 + drain);
    const out = Buffer.allocUnsafe(size);
    // Byte loops rather than copy()/set(): for a few dozen bytes, a call into native code costs more than the copy.
    let pos = 0;
    for (let i = 0; i < prefix.length; i++) out[pos++] = prefix[i]!;
    if (sequence !== 0) {
      out[pos++] = 0x10;
      pos = writeVarint(out, pos, sequence);
    }
    for (let i = 0; i < health.length; i++) out[pos++] = health[i]!;
    // Field 4, server_time: a Timestamp that is all defaults is still present, as an empty message.
    pos = writeTimestamp(out, pos, 0x22, serverTimeMs, serverTime);
    for (let i = 0; i < interval.length; i++) out[pos++] = interval[i]!;
    if (drainDeadlineMs !== null) {
      out[pos++] = 0x30; // field 6, drain_requested: true
      out[pos++] = 0x01;
      pos = writeTimestamp(out, pos, 0x3a, drainDeadlineMs, drain);
    }
    return out;
  }
}

/** An ack as a protobuf-es message. */
function ackMessage(workerId: string, fields: HeartbeatAckFields): HeartbeatStreamResponse {
  return create(HeartbeatStreamResponseSchema, {
    workerId,
    sequence: fields.sequence,
    healthStatus: fields.healthStatus,
    serverTime: timestampInit(fields.serverTimeMs),
    nextHeartbeatInterval: durationFromMs(fields.nextHeartbeatIntervalMs),
    ...(fields.drainDeadlineMs === null ? {} : { drainRequested: true, drainDeadline: timestampInit(fields.drainDeadlineMs) }),
  });
}

/** HeartbeatStream's response serializer: bytes from {@link HeartbeatAckEncoder} as they are, and any message by protobuf-es. */
export function serializeHeartbeatAck(value: Buffer | HeartbeatStreamResponse): Buffer {
  if (Buffer.isBuffer(value)) return value;
  const bytes = toBinary(HeartbeatStreamResponseSchema, value);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** timestampFromMs's fields, for protobuf-es. */
function timestampInit(ms: number) {
  const seconds = Math.floor(ms / 1000);
  return { seconds: BigInt(seconds), nanos: (ms - seconds * 1000) * 1_000_000 };
}

const wholeMsSince1970 = (ms: number) => Number.isSafeInteger(ms) && ms >= 0;
const isUint32 = (n: number) => Number.isInteger(n) && n >= 0 && n <= 0xffff_ffff;

function varintLength(value: number): number {
  let length = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 128);
    length++;
  }
  return length;
}

function writeVarint(out: Buffer, pos: number, value: number): number {
  while (value >= 0x80) {
    out[pos++] = (value & 0x7f) | 0x80;
    value = Math.floor(value / 128);
  }
  out[pos++] = value;
  return pos;
}

/** The length of a Timestamp's body for whole milliseconds since 1970: seconds (field 1) and nanos (field 2), each left out when 0. */
function timestampLength(ms: number): number {
  const seconds = Math.floor(ms / 1000);
  const nanos = (ms - seconds * 1000) * 1_000_000;
  return (seconds === 0 ? 0 : 1 + varintLength(seconds)) + (nanos === 0 ? 0 : 1 + varintLength(nanos));
}

/** Writes a Timestamp field (`tag`) whose body is `length` bytes long (one byte of length: at most 22). */
function writeTimestamp(out: Buffer, pos: number, tag: number, ms: number, length: number): number {
  const seconds = Math.floor(ms / 1000);
  const nanos = (ms - seconds * 1000) * 1_000_000;
  out[pos++] = tag;
  out[pos++] = length;
  if (seconds !== 0) {
    out[pos++] = 0x08;
    pos = writeVarint(out, pos, seconds);
  }
  if (nanos !== 0) {
    out[pos++] = 0x10;
    pos = writeVarint(out, pos, nanos);
  }
  return pos;
}
