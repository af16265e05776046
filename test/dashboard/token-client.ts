import { Metadata } from "@grpc/grpc-js";
import { WorkerState } from "../../clients/typescript/src/gen/sentinel/registry/v1/worker_pb.js";
import { RawRegistryClient } from "../support/grpc-test-client.js";

const STATE_NAMES: Readonly<Record<number, string>> = {
  [WorkerState.ACTIVE]: "active",
  [WorkerState.CORDONED]: "cordoned",
  [WorkerState.DRAINING]: "draining",
};

/**
 * The generated gRPC client with a bearer token on every call: what the
 * dashboard's tests drive the registry with, beside the page, to set a
 * fleet up and to check what an action changed.
 */
export class TokenClient {
  private readonly raw: RawRegistryClient;

  constructor(
    address: string,
    private readonly token: string,
  ) {
    this.raw = new RawRegistryClient(address);
  }

  /** Calls a unary method by its local name; rejects with the grpc ServiceError. */
  call<T = any>(method: string, request: object = {}): Promise<T> {
    const metadata = new Metadata();
    metadata.set("authorization", `Bearer ${this.token}`);
    const fn = this.raw.grpc[method] as unknown as (request: object, metadata: Metadata, callback: (error: Error | null, response: T) => void) => void;
    return new Promise((resolve, reject) => fn.call(this.raw.grpc, request, metadata, (error, response) => (error ? reject(error) : resolve(response))));
  }

  /** Registers a worker with one running task, so that a drain leaves it draining (an idle one is removed at once). */
  async busyWorker(nodeId: string, labels: Record<string, string> = {}, version = ""): Promise<string> {
    const { worker } = await this.call("registerWorker", { nodeId, capabilities: ["coder"], maxConcurrentTasks: 2, labels, version });
    await this.call("updateTaskCount", { workerId: worker.id, delta: 1 });
    return worker.id as string;
  }

  /** A worker's state as the registry answers it now: "active", "cordoned" or "draining". */
  async stateOf(workerId: string): Promise<string> {
    const { worker } = await this.call("getWorker", { workerId });
    return STATE_NAMES[worker.state as number] ?? `unknown state ${worker.state}`;
  }

  close(): void {
    this.raw.close();
  }
}
