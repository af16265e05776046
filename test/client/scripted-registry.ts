import { durationFromMs, durationMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import {
  WorkerRegistryService,
  type DrainWorkerRequest,
  type HeartbeatStreamRequest,
  type RecordTaskCompletionRequest,
  type UpdateTaskCountRequest,
} from "../../clients/typescript/src/gen/sentinel/registry/v1/registry_service_pb.js";
import { HealthStatus, WorkerState } from "../../clients/typescript/src/gen/sentinel/registry/v1/worker_pb.js";
import { grpcServiceDefinition } from "../../clients/typescript/src/grpc-definition.js";

type Unary<Req> = (call: grpc.ServerUnaryCall<Req, unknown>, callback: grpc.sendUnaryData<unknown>) => void;

/**
 * A stand-in registry for the WorkerNode cases a real one cannot show on
 * demand: a drain deadline that passes in milliseconds (the real minimum
 * grace is 1 s), a record removed at a chosen moment, a task count whose
 * reply is held back. One worker; every call is recorded by name. Its drain
 * follows the contract: replies carry the drain, and the worker is removed
 * once its count reaches zero.
 */
export class ScriptedRegistry {
  readonly workerId = "worker-1767268800123-abc123xyz";
  /** The calls received, by method name, in order. */
  readonly calls: string[] = [];
  readonly completions: { success: boolean; durationMs: number }[] = [];
  currentTasks = 0;
  /** Whether the record is gone: every call about it then answers NOT_FOUND. */
  removed = false;
  /** The drain deadline in Unix ms, while draining. */
  drainDeadlineMs: number | undefined;
  private readonly server = new grpc.Server();
  private heldRaise: { arrived: () => void; reply: Promise<void> } | undefined;
  port = 0;

  static async start(): Promise<ScriptedRegistry> {
    const registry = new ScriptedRegistry();
    registry.server.addService(grpcServiceDefinition(WorkerRegistryService), registry.handlers());
    registry.port = await new Promise<number>((resolve, reject) =>
      registry.server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, port) => (error ? reject(error) : resolve(port))),
    );
    return registry;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Marks the worker draining until `deadlineMs` (Unix ms): the next heartbeat reply says so. */
  drain(deadlineMs: number): void {
    this.drainDeadlineMs = this.drainDeadlineMs === undefined ? deadlineMs : Math.min(this.drainDeadlineMs, deadlineMs);
  }

  /**
   * Holds the reply to the next UpdateTaskCount(+1). Resolves once that call
   * has arrived, with the function that lets its reply go.
   */
  holdRaise(): Promise<() => void> {
    let release!: () => void;
    const reply = new Promise<void>((resolve) => (release = resolve));
    return new Promise((arrived) => {
      this.heldRaise = { arrived: () => arrived(release), reply };
    });
  }

  stop(): void {
    this.server.forceShutdown();
  }

  private worker() {
    const draining = this.drainDeadlineMs !== undefined;
    return {
      id: this.workerId,
      nodeId: "n",
      capabilities: ["coder"],
      maxConcurrentTasks: 2,
      currentTasks: this.currentTasks,
      availableCapacity: 2 - this.currentTasks,
      healthStatus: HealthStatus.HEALTHY,
      state: draining ? WorkerState.DRAINING : WorkerState.ACTIVE,
      drainDeadline: draining ? timestampFromMs(this.drainDeadlineMs!) : undefined,
    };
  }

  private notFound(callback: grpc.sendUnaryData<unknown>): boolean {
    if (!this.removed) return false;
    callback({ code: grpc.status.NOT_FOUND, details: `worker ${this.workerId} not found` });
    return true;
  }

  private handlers(): grpc.UntypedServiceImplementation {
    const registerWorker: Unary<unknown> = (_call, callback) => {
      this.calls.push("registerWorker");
      this.removed = false;
      this.drainDeadlineMs = undefined;
      callback(null, { worker: this.worker() });
    };
    const unregisterWorker: Unary<unknown> = (_call, callback) => {
      this.calls.push("unregisterWorker");
      if (this.notFound(callback)) return;
      this.removed = true;
      callback(null, {});
    };
    const updateTaskCount: Unary<UpdateTaskCountRequest> = (call, callback) => {
      this.calls.push(`updateTaskCount(${call.request.delta})`);
      const answer = () => {
        if (this.notFound(callback)) return;
        this.currentTasks += call.request.delta;
        const worker = this.worker();
        if (this.drainDeadlineMs !== undefined && this.currentTasks === 0) this.removed = true;
        callback(null, { worker });
      };
      const held = call.request.delta > 0 ? this.heldRaise : undefined;
      if (held === undefined) return answer();
      this.heldRaise = undefined;
      held.arrived();
      void held.reply.then(answer);
    };
    const recordTaskCompletion: Unary<RecordTaskCompletionRequest> = (call, callback) => {
      this.calls.push("recordTaskCompletion");
      if (this.notFound(callback)) return;
      this.completions.push({ success: call.request.success, durationMs: call.request.durationMs });
      callback(null, { worker: this.worker() });
    };
    const drainWorker: Unary<DrainWorkerRequest> = (call, callback) => {
      this.calls.push("drainWorker");
      if (this.notFound(callback)) return;
      const graceMs = call.request.grace === undefined ? 600_000 : durationMs(call.request.grace);
      this.drain(Date.now() + graceMs);
      const worker = this.worker();
      if (this.currentTasks === 0) this.removed = true;
      callback(null, { worker });
    };
    const heartbeatStream = (call: grpc.ServerDuplexStream<HeartbeatStreamRequest, unknown>) => {
      call.on("error", () => undefined);
      call.on("end", () => call.end());
      call.on("data", (request: HeartbeatStreamRequest) => {
        if (this.removed) {
          call.emit("error", { code: grpc.status.NOT_FOUND, details: `worker ${this.workerId} not found` });
          return;
        }
        const draining = this.drainDeadlineMs !== undefined;
        call.write({
          workerId: this.workerId,
          sequence: request.sequence,
          healthStatus: HealthStatus.HEALTHY,
          nextHeartbeatInterval: durationFromMs(20),
          drainRequested: draining,
          drainDeadline: draining ? timestampFromMs(this.drainDeadlineMs!) : undefined,
        });
      });
    };
    return { registerWorker, unregisterWorker, updateTaskCount, recordTaskCompletion, drainWorker, heartbeatStream };
  }
}
