import { describe, expect, it } from "vitest";
import { methodLabel } from "../../src/transport/transport-observer.js";

describe("methodLabel", () => {
  const service = "sentinel.registry.v1.WorkerRegistryService";
  const known = new Set([`/${service}/RegisterWorker`, "/grpc.health.v1.Health/Check"]);

  it("names the registry's methods as in the proto, and the hosted services' as service/method", () => {
    expect(methodLabel(`/${service}/RegisterWorker`, service, known)).toBe("RegisterWorker");
    expect(methodLabel("/grpc.health.v1.Health/Check", service, known)).toBe("grpc.health.v1.Health/Check");
  });

  it("reads any path it does not serve as other: a caller chooses the path, and a label must stay bounded", () => {
    expect(methodLabel(`/${service}/NoSuchMethod`, service, known)).toBe("other");
    expect(methodLabel("/grpc.health.v1.Health/worker-1767268800123-abc123xyz", service, known)).toBe("other");
  });
});
