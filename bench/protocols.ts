import { create, fromBinary, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { BinaryReader, BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import {
  AcquireWorkerRequestSchema,
  AcquireWorkerResponseSchema,
  GetWorkersForLoadBalancingRequestSchema,
  GetWorkersForLoadBalancingResponseSchema,
  HeartbeatStreamRequestSchema,
  HeartbeatStreamResponseSchema,
  RecordTaskCompletionRequestSchema,
  RecordTaskCompletionResponseSchema,
  RegisterWorkerRequestSchema,
  RegisterWorkerResponseSchema,
  ReleaseOutcome,
  ReleaseWorkerRequestSchema,
  ReleaseWorkerResponseSchema,
  UpdateTaskCountRequestSchema,
  UpdateTaskCountResponseSchema,
  WorkerRegistryService,
} from "@sentinel/worker-registry-client/contract";
import { HealthStatus, RankedWorkerSchema, WorkerSchema, type Worker } from "@sentinel/worker-registry-client/contract";

/**
 * The wire protocols the load generator speaks: the registry's own RPCs
 * (also served, with canned answers of the same shape, by the echo server)
 * and etcd's lease RPCs, encoded by hand from a four-field descriptor.
 */

export const SERVICE = WorkerRegistryService.typeName;
export const registryPath = (method: string) => `/${SERVICE}/${method}`;

/** A protobuf-es message as grpc-js wants it: (de)serializers over Buffers. */
export interface Codec<T> {
  readonly serialize: (value: T) => Buffer;
  readonly deserialize: (bytes: Buffer) => T;
}

export function codec<D extends DescMessage>(schema: D): Codec<MessageShape<D>> {
  return {
    serialize: (value) => {
      const bytes = toBinary(schema, value);
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    },
    deserialize: (bytes) => fromBinary(schema, bytes),
  };
}

export const heartbeatRequest = codec(HeartbeatStreamRequestSchema);
export const heartbeatResponse = codec(HeartbeatStreamResponseSchema);

/** The registry's unary methods the suite drives, with their codecs. */
export const unaryMethods = {
  RegisterWorker: { request: codec(RegisterWorkerRequestSchema), response: codec(RegisterWorkerResponseSchema) },
  UpdateTaskCount: { request: codec(UpdateTaskCountRequestSchema), response: codec(UpdateTaskCountResponseSchema) },
  RecordTaskCompletion: { request: codec(RecordTaskCompletionRequestSchema), response: codec(RecordTaskCompletionResponseSchema) },
  AcquireWorker: { request: codec(AcquireWorkerRequestSchema), response: codec(AcquireWorkerResponseSchema) },
  ReleaseWorker: { request: codec(ReleaseWorkerRequestSchema), response: codec(ReleaseWorkerResponseSchema) },
  GetWorkersForLoadBalancing: {
    request: codec(GetWorkersForLoadBalancingRequestSchema),
    response: codec(GetWorkersForLoadBalancingResponseSchema),
  },
} as const;
export type UnaryMethodName = keyof typeof unaryMethods;

/** The heartbeat ack the registry sends, built the same way for the echo server. */
export function heartbeatAck(workerId: string, sequence: number) {
  return create(HeartbeatStreamResponseSchema, {
    workerId,
    sequence,
    healthStatus: HealthStatus.HEALTHY,
    serverTime: timestampFromMs(Date.now()),
    nextHeartbeatInterval: durationFromMs(300_000),
  });
}

/** A worker as the registry would return it: same fields and sizes as a seeded bench worker. */
export function sampleWorker(id = "worker-1767225600000-0000000ab"): Worker {
  const now = Date.now();
  return create(WorkerSchema, {
    id,
    nodeId: "bench-node-00042",
    capabilities: ["general", "pool-3"],
    maxConcurrentTasks: 1000,
    currentTasks: 1,
    availableCapacity: 999,
    successRate: 0.5,
    healthStatus: HealthStatus.HEALTHY,
    registeredAt: timestampFromMs(now - 60_000),
    lastHeartbeatAt: timestampFromMs(now),
    metrics: { tasksCompleted: 12n, tasksFailedCount: 1n, averageTaskDurationMs: 118.5 },
  });
}

/** Canned answers of the registry's shapes, one per unary method, for the echo server. */
export function cannedResponses(): { readonly [M in UnaryMethodName]: unknown } {
  const worker = sampleWorker();
  const ranked = create(RankedWorkerSchema, { worker, priority: 0.7495, capacityScore: 0.999, successScore: 0.5, speedScore: 0.5 });
  return {
    RegisterWorker: create(RegisterWorkerResponseSchema, { worker }),
    UpdateTaskCount: create(UpdateTaskCountResponseSchema, { worker }),
    RecordTaskCompletion: create(RecordTaskCompletionResponseSchema, { worker }),
    AcquireWorker: create(AcquireWorkerResponseSchema, {
      worker: ranked,
      reservationId: "rsv-1767225600000-abcdefghij0123456789",
      expiresAt: timestampFromMs(Date.now() + 600_000),
    }),
    ReleaseWorker: create(ReleaseWorkerResponseSchema, { outcome: ReleaseOutcome.RELEASED, worker }),
    GetWorkersForLoadBalancing: create(GetWorkersForLoadBalancingResponseSchema, {
      workers: Array.from({ length: 10 }, (_, i) => create(RankedWorkerSchema, { ...ranked, worker: sampleWorker(`worker-1767225600000-00000000${i}`) })),
    }),
  };
}

// ---- etcd (etcdserverpb.Lease), hand-encoded ----

export const ETCD_LEASE_GRANT = "/etcdserverpb.Lease/LeaseGrant";
export const ETCD_LEASE_KEEPALIVE = "/etcdserverpb.Lease/LeaseKeepAlive";

/** ResponseHeader { uint64 cluster_id = 1; uint64 member_id = 2; int64 revision = 3; uint64 raft_term = 4; } */
export interface EtcdHeader {
  clusterId: bigint;
  memberId: bigint;
  revision: bigint;
  raftTerm: bigint;
}

/** LeaseGrantRequest { int64 TTL = 1; int64 ID = 2; } */
export function encodeLeaseGrant(ttlSeconds: number): Buffer {
  return Buffer.from(new BinaryWriter().tag(1, WireType.Varint).int64(ttlSeconds).finish());
}

/** LeaseKeepAliveRequest { int64 ID = 1; } */
export function encodeKeepAlive(id: bigint): Buffer {
  return Buffer.from(new BinaryWriter().tag(1, WireType.Varint).int64(id).finish());
}

/** LeaseGrantResponse { header = 1; int64 ID = 2; int64 TTL = 3; string error = 4; } and LeaseKeepAliveResponse { header = 1; int64 ID = 2; int64 TTL = 3; } */
export interface EtcdLeaseResponse {
  header: EtcdHeader | undefined;
  id: bigint;
  ttl: bigint;
  error: string;
}

export function decodeLeaseResponse(bytes: Uint8Array): EtcdLeaseResponse {
  const reader = new BinaryReader(bytes);
  const out: EtcdLeaseResponse = { header: undefined, id: 0n, ttl: 0n, error: "" };
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) out.header = decodeHeader(reader.bytes());
    else if (field === 2 && wireType === WireType.Varint) out.id = BigInt(reader.int64());
    else if (field === 3 && wireType === WireType.Varint) out.ttl = BigInt(reader.int64());
    else if (field === 4 && wireType === WireType.LengthDelimited) out.error = reader.string();
    else reader.skip(wireType, field);
  }
  return out;
}

function decodeHeader(bytes: Uint8Array): EtcdHeader {
  const reader = new BinaryReader(bytes);
  const header: EtcdHeader = { clusterId: 0n, memberId: 0n, revision: 0n, raftTerm: 0n };
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (wireType !== WireType.Varint) {
      reader.skip(wireType, field);
      continue;
    }
    const value = BigInt(field === 3 ? reader.int64() : reader.uint64());
    if (field === 1) header.clusterId = value;
    else if (field === 2) header.memberId = value;
    else if (field === 3) header.revision = value;
    else if (field === 4) header.raftTerm = value;
  }
  return header;
}
