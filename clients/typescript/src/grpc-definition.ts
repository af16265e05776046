import { create, fromBinary, isMessage, toBinary, type DescMessage, type DescMethod, type DescService } from "@bufbuild/protobuf";
import type { MethodDefinition } from "@grpc/grpc-js";

/**
 * grpc-js needs a ServiceDefinition (paths, stream flags, serializers);
 * protobuf-es generates service descriptors. This maps one to the other, so
 * that the server and the client share the generated contract and nothing is
 * written by hand per method. Keys are the methods' local names (lowerCamel).
 */
export function grpcServiceDefinition(service: DescService): Record<string, MethodDefinition<unknown, unknown>> {
  const definition: Record<string, MethodDefinition<unknown, unknown>> = {};
  for (const method of service.methods) {
    definition[method.localName] = grpcMethodDefinition(service, method);
  }
  return definition;
}

function grpcMethodDefinition(service: DescService, method: DescMethod): MethodDefinition<unknown, unknown> {
  const { input, output } = method;
  return {
    path: `/${service.typeName}/${method.name}`,
    originalName: method.name,
    requestStream: method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
    responseStream: method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
    requestSerialize: (message) => serialize(input, message),
    requestDeserialize: (bytes: Buffer) => fromBinary(input, bytes),
    responseSerialize: (message) => serialize(output, message),
    responseDeserialize: (bytes: Buffer) => fromBinary(output, bytes),
  };
}

/**
 * Serializes a message, or a plain object in the message's init shape (so
 * callers may pass `{ workerId }` rather than `create(Schema, { workerId })`).
 * The Buffer shares the encoded bytes: no copy.
 */
function serialize(schema: DescMessage, message: unknown): Buffer {
  const value = isMessage(message, schema) ? message : create(schema, message as never);
  const bytes = toBinary(schema, value);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
