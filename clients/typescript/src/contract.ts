/**
 * The `sentinel.registry.v1` contract as protobuf-es generated it: every
 * message schema, enum and the `WorkerRegistryService` descriptor, and
 * {@link grpcServiceDefinition} to serve or call the service with grpc-js
 * directly. For code that speaks the wire protocol itself (a server, a load
 * generator, a gateway); most callers want the client in the package root.
 */
export * from "./gen/sentinel/registry/v1/registry_service_pb.js";
export * from "./gen/sentinel/registry/v1/worker_pb.js";
export { grpcServiceDefinition } from "./grpc-definition.js";
