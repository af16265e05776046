import { toBinary, type DescFile } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { ReflectionService } from "@grpc/reflection";
import type { Server } from "@grpc/grpc-js";

/**
 * Adds gRPC server reflection (v1 and v1alpha) for the given files, so that
 * grpcurl and other dynamic clients can list, describe and call every service
 * without proto files. The descriptors come from the protobuf-es generated
 * files, dependencies first, with their real names; proto-loader's would lack
 * the dependency list that clients need to resolve imported types.
 */
export function addReflection(server: Server, files: readonly DescFile[]): void {
  const ordered: DescFile[] = [];
  const seen = new Set<string>();
  const visit = (file: DescFile): void => {
    if (seen.has(file.name)) return;
    seen.add(file.name);
    file.dependencies.forEach(visit);
    ordered.push(file);
  };
  files.forEach(visit);
  const fileDescriptorProtos = ordered.map((file) => Buffer.from(toBinary(FileDescriptorProtoSchema, file.proto)));
  // ReflectionService reads only `fileDescriptorProtos` from each entry of a proto-loader package definition.
  const packageDefinition = { descriptors: { fileDescriptorProtos } } as unknown as ConstructorParameters<typeof ReflectionService>[0];
  new ReflectionService(packageDefinition).addToServer(server);
}
