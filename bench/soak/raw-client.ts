/** A plain grpc-js client of the registry, for calls the TypeScript client wraps too kindly (raw statuses, watch streams read by hand). */
import * as grpc from "@grpc/grpc-js";
import { WorkerRegistryService } from "@sentinel/worker-registry-client/contract";
import { grpcServiceDefinition } from "@sentinel/worker-registry-client/contract";

export type RawClient = grpc.Client & Record<string, (request: object, callback: (error: grpc.ServiceError | null, response: any) => void) => void>;

/** A client that can open WatchWorkers streams. */
export type WatchClient = { watchWorkers(request: object): grpc.ClientReadableStream<any> } & grpc.Client;

/** A client on a channel of its own (a distinct `grpc.channel_id`). */
export function rawClient(address: string, channelId: number): RawClient {
  const Client = grpc.makeGenericClientConstructor(grpcServiceDefinition(WorkerRegistryService), "WorkerRegistryService");
  return new Client(address, grpc.credentials.createInsecure(), { "grpc.channel_id": channelId }) as unknown as RawClient;
}

/** A unary call with a deadline; rejects with the grpc-js error. */
export function call<T = any>(client: RawClient, method: string, request: object, deadlineMs = 10_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const fn = client[method]!;
    (fn as unknown as (r: object, m: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: T) => void) => void).call(
      client,
      request,
      new grpc.Metadata(),
      { deadline: Date.now() + deadlineMs },
      (error, response) => (error ? reject(error) : resolve(response)),
    );
  });
}
