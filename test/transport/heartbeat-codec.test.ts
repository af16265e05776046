import { create, equals, fromBinary, toBinary } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  HealthStatus,
  HeartbeatStreamRequestSchema,
  HeartbeatStreamResponseSchema,
} from "@sentinel/worker-registry-client/contract";
import { decodeHeartbeat, HeartbeatAckEncoder, serializeHeartbeatAck, type AckPrefix, type HeartbeatAckFields } from "../../src/transport/heartbeat-codec.js";

/** The ack as the registry built it before the hand encoder: protobuf-es all the way. */
function protobufEsAck(workerId: string, f: HeartbeatAckFields) {
  return create(HeartbeatStreamResponseSchema, {
    workerId,
    sequence: f.sequence,
    healthStatus: f.healthStatus,
    serverTime: timestampFromMs(f.serverTimeMs),
    nextHeartbeatInterval: durationFromMs(f.nextHeartbeatIntervalMs),
    ...(f.drainDeadlineMs === null ? {} : { drainRequested: true, drainDeadline: timestampFromMs(f.drainDeadlineMs) }),
  });
}

const encode = (encoder: HeartbeatAckEncoder, prefix: AckPrefix, f: HeartbeatAckFields) =>
  encoder.encode(prefix, f.sequence, f.healthStatus, f.serverTimeMs, f.nextHeartbeatIntervalMs, f.drainDeadlineMs);

const workerIds = fc.oneof(
  fc.constant("worker-1767225600000-0000000ab"),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: "grapheme", maxLength: 40 }),
  fc.string({ minLength: 120, maxLength: 300 }),
);
const times = fc.oneof(
  fc.integer({ min: 0, max: 4_102_444_800_000 }), // 1970 to 2100
  fc.constantFrom(0, 1, 999, 1000, 1001, 1_767_225_600_000, 1_767_225_600_999),
  fc.integer({ min: -5_000_000_000, max: -1 }), // before 1970: protobuf-es's own path
);
const ackFields = fc.record<HeartbeatAckFields>({
  sequence: fc.oneof(fc.integer({ min: 0, max: 0xffff_ffff }), fc.constantFrom(0, 1, 127, 128, 16_383, 16_384, 0xffff_ffff)),
  healthStatus: fc.constantFrom(HealthStatus.UNSPECIFIED, HealthStatus.HEALTHY, HealthStatus.DEGRADED, HealthStatus.UNHEALTHY),
  serverTimeMs: times,
  nextHeartbeatIntervalMs: fc.oneof(fc.constantFrom(0, 1, 1000, 150_000, 300_000), fc.integer({ min: 0, max: 86_400_000 })),
  drainDeadlineMs: fc.option(times, { nil: null }),
});

describe("HeartbeatAckEncoder", () => {
  it("writes the bytes protobuf-es writes, and protobuf-es decodes them to the same ack, draining or not", () => {
    fc.assert(
      fc.property(workerIds, fc.array(ackFields, { minLength: 1, maxLength: 5 }), (workerId, acks) => {
        // One encoder, many acks on it, on two streams: what it caches must never leak from one ack into the next.
        const encoder = new HeartbeatAckEncoder();
        const prefix = encoder.prefix(workerId);
        const other = encoder.prefix("worker-other");
        for (const fields of acks) {
          const expected = protobufEsAck(workerId, fields);
          const bytes = serializeHeartbeatAck(encode(encoder, prefix, fields));
          expect(fromBinary(HeartbeatStreamResponseSchema, encode(encoder, other, fields)).workerId).toBe("worker-other");
          expect(Buffer.from(bytes).equals(Buffer.from(toBinary(HeartbeatStreamResponseSchema, expected)))).toBe(true);
          const decoded = fromBinary(HeartbeatStreamResponseSchema, bytes);
          expect(equals(HeartbeatStreamResponseSchema, decoded, expected)).toBe(true);
          expect(decoded.drainRequested).toBe(fields.drainDeadlineMs !== null);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it("carries a drain deadline in the fields protobuf-es reads back", () => {
    const encoder = new HeartbeatAckEncoder();
    const ack = fromBinary(
      HeartbeatStreamResponseSchema,
      encoder.encode(encoder.prefix("worker-1"), 7, HealthStatus.HEALTHY, 1_767_225_600_123, 300_000, 1_767_225_900_456),
    );
    expect(ack).toMatchObject({ workerId: "worker-1", sequence: 7, healthStatus: HealthStatus.HEALTHY, drainRequested: true });
    expect(Number(ack.drainDeadline!.seconds) * 1000 + ack.drainDeadline!.nanos / 1e6).toBe(1_767_225_900_456);
    expect(Number(ack.serverTime!.seconds) * 1000 + ack.serverTime!.nanos / 1e6).toBe(1_767_225_600_123);
    expect(Number(ack.nextHeartbeatInterval!.seconds)).toBe(300);
  });

  it("passes a protobuf-es message through protobuf-es", () => {
    const message = create(HeartbeatStreamResponseSchema, { workerId: "w", sequence: 3 });
    expect(serializeHeartbeatAck(message).equals(Buffer.from(toBinary(HeartbeatStreamResponseSchema, message)))).toBe(true);
  });
});

describe("decodeHeartbeat", () => {
  it("reads what protobuf-es reads from any HeartbeatStreamRequest", () => {
    fc.assert(
      fc.property(workerIds, fc.integer({ min: 0, max: 0xffff_ffff }), (workerId, sequence) => {
        const bytes = Buffer.from(toBinary(HeartbeatStreamRequestSchema, create(HeartbeatStreamRequestSchema, { workerId, sequence })));
        const beat = decodeHeartbeat(bytes);
        expect({ workerId: beat.workerId, sequence: beat.sequence }).toEqual({ workerId, sequence });
      }),
      { numRuns: 2000 },
    );
  });

  it("agrees with protobuf-es on arbitrary bytes: the same fields, or the same refusal", () => {
    const wire = fc.oneof(
      fc.uint8Array({ maxLength: 64 }),
      // Valid prefixes followed by junk, unknown fields, repeated fields, fields out of order, long varints.
      fc.tuple(fc.string({ maxLength: 20 }), fc.integer({ min: 0, max: 0xffff_ffff }), fc.uint8Array({ maxLength: 12 })).map(([id, seq, tail]) => {
        const head = toBinary(HeartbeatStreamRequestSchema, create(HeartbeatStreamRequestSchema, { workerId: id, sequence: seq }));
        return Uint8Array.from([...head, ...tail]);
      }),
      fc.constantFrom(
        Uint8Array.from([0x10, 0x05, 0x0a, 0x01, 0x61]), // sequence before worker_id
        Uint8Array.from([0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), // a uint32 varint over 5 bytes (truncated to 32 bits)
        Uint8Array.from([0x10, 0xff, 0xff, 0xff, 0xff, 0x0f]), // the largest uint32
        Uint8Array.from([0x10, 0x80, 0x00]), // a padded zero
        Uint8Array.from([0x0a, 0x02, 0xc3, 0xa9]), // "é": not ASCII
        Uint8Array.from([0x0a, 0x02, 0xff, 0xfe]), // not UTF-8
        Uint8Array.from([0x0a, 0x05, 0x61]), // truncated id
        Uint8Array.from([0x10]), // truncated sequence
        Uint8Array.from([0x0a, 0x01, 0x61, 0x0a, 0x01, 0x62]), // worker_id twice: the last wins
        Uint8Array.from([0x18, 0x01]), // an unknown field only
      ),
    );
    fc.assert(
      fc.property(wire, (array) => {
        const bytes = Buffer.from(array);
        let expected: { workerId: string; sequence: number } | "refused";
        try {
          const message = fromBinary(HeartbeatStreamRequestSchema, bytes);
          expected = { workerId: message.workerId, sequence: message.sequence };
        } catch {
          expected = "refused";
        }
        let actual: { workerId: string; sequence: number } | "refused";
        try {
          const beat = decodeHeartbeat(bytes);
          actual = { workerId: beat.workerId, sequence: beat.sequence };
        } catch {
          actual = "refused";
        }
        expect(actual).toEqual(expected);
      }),
      { numRuns: 5000 },
    );
  });
});
