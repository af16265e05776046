import * as grpc from "@grpc/grpc-js";
import { WorkerRegistryService } from "../../clients/typescript/src/gen/sentinel/registry/v1/registry_service_pb.js";
import { grpcServiceDefinition } from "../../clients/typescript/src/grpc-definition.js";

type Unary = (request: object, callback: (error: grpc.ServiceError | null, response: any) => void) => void;

/**
 * A raw gRPC client of WorkerRegistryService built from the generated
 * descriptors: tests talk to the real server over a real connection, without
 * the project's client wrapper in between.
 */
export class RawRegistryClient {
  readonly grpc: grpc.Client & Record<string, Unary> & { heartbeatStream(): grpc.ClientDuplexStream<object, any> };

  constructor(address: string, options: grpc.ChannelOptions = {}) {
    const Client = grpc.makeGenericClientConstructor(grpcServiceDefinition(WorkerRegistryService), "WorkerRegistryService");
    this.grpc = new Client(address, grpc.credentials.createInsecure(), options) as never;
  }

  /** Calls a unary method by its local name; rejects with the grpc ServiceError. */
  call<T = any>(method: string, request: object = {}): Promise<T> {
    return new Promise((resolve, reject) => {
      const fn = this.grpc[method];
      if (typeof fn !== "function") throw new Error(`no method ${method}`);
      fn.call(this.grpc, request, (error, response) => (error ? reject(error) : resolve(response as T)));
    });
  }

  /** Calls a unary method that must fail; resolves to its status code and details. */
  async fail(method: string, request: object = {}): Promise<{ code: grpc.status; details: string }> {
    try {
      await this.call(method, request);
    } catch (error) {
      const { code, details } = error as grpc.ServiceError;
      return { code, details };
    }
    throw new Error(`${method} succeeded but was expected to fail`);
  }

  close(): void {
    this.grpc.close();
  }
}
