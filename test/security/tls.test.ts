/**
 * TLS and mutual TLS, with certificates the test makes itself with the
 * openssl CLI: a CA, a server certificate for 127.0.0.1/localhost, a client
 * certificate signed by the CA, and a client certificate from another CA.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRegistryServer, type RegistryServer } from "../../src/app.js";
import { WorkerRegistryClient } from "../../clients/typescript/src/worker-registry-client.js";
import { RegistryClientError } from "../../clients/typescript/src/registry-client-error.js";
import { WorkerNode } from "../../clients/typescript/src/worker-node.js";
import { tempDirs } from "../support/temp-dir.js";
import { codeName, healthCheck, makeCertificates, REGISTRATION, SecClient, type Certificates } from "./support.js";

const dirs = tempDirs();
let certs: Certificates;
let pem: (file: string) => Buffer;

beforeAll(() => {
  certs = makeCertificates(dirs.make("registry-tls-"));
  pem = (file) => readFileSync(file);
});
afterAll(() => dirs.cleanup());

/** Credentials that trust the test CA, optionally presenting a client certificate. */
function tls(client?: "trusted" | "other"): grpc.ChannelCredentials {
  if (client === undefined) return grpc.credentials.createSsl(pem(certs.caCert));
  const [key, cert] = client === "trusted" ? [certs.clientKey, certs.clientCert] : [certs.otherClientKey, certs.otherClientCert];
  return grpc.credentials.createSsl(pem(certs.caCert), pem(key), pem(cert));
}

describe("a TLS server", () => {
  let server: RegistryServer;
  let address: string;

  beforeAll(async () => {
    server = await startRegistryServer({
      host: "127.0.0.1",
      port: 0,
      dbPath: join(dirs.make(), "registry.db"),
      logLevel: "silent",
      security: { tlsCertFile: certs.serverCert, tlsKeyFile: certs.serverKey },
    });
    address = `127.0.0.1:${server.port}`;
  });
  afterAll(async () => server.close());

  it("refuses a plaintext client: the call fails with UNAVAILABLE", async () => {
    const client = new SecClient(address, grpc.credentials.createInsecure());
    try {
      const outcome = await client.outcome("getRegistryStats", {}, undefined, 5000);
      expect(codeName(outcome.code)).toBe("UNAVAILABLE");
    } finally {
      client.close();
    }
  });

  it("serves a TLS client that trusts the CA", async () => {
    const client = new SecClient(address, tls());
    try {
      const registered = await client.call("registerWorker", REGISTRATION);
      expect(registered.worker.nodeId).toBe("node-1");
      expect((await client.call("getWorker", { workerId: registered.worker.id })).worker.id).toBe(registered.worker.id);
    } finally {
      client.close();
    }
  });

  it("is refused by a TLS client that does not trust its CA (the server's identity is checked)", async () => {
    const client = new SecClient(address, grpc.credentials.createSsl(pem(certs.otherCaCert)));
    try {
      expect(codeName((await client.outcome("getRegistryStats", {}, undefined, 5000)).code)).toBe("UNAVAILABLE");
    } finally {
      client.close();
    }
  });

  it("serves grpc.health.v1 over TLS", async () => {
    const outcome = await healthCheck(address, undefined, tls());
    expect(codeName(outcome.code)).toBe("OK");
    const plaintext = await healthCheck(address, undefined, grpc.credentials.createInsecure());
    expect(codeName(plaintext.code)).toBe("UNAVAILABLE");
  });
});

describe("a mutual TLS server (tlsClientCaFile)", () => {
  let server: RegistryServer;
  let address: string;

  beforeAll(async () => {
    server = await startRegistryServer({
      host: "127.0.0.1",
      port: 0,
      dbPath: join(dirs.make(), "registry.db"),
      logLevel: "silent",
      security: { tlsCertFile: certs.serverCert, tlsKeyFile: certs.serverKey, tlsClientCaFile: certs.caCert },
    });
    address = `127.0.0.1:${server.port}`;
  });
  afterAll(async () => server.close());

  const statsWith = async (credentials: grpc.ChannelCredentials) => {
    const client = new SecClient(address, credentials);
    try {
      return await client.outcome("getRegistryStats", {}, undefined, 5000);
    } finally {
      client.close();
    }
  };

  it("refuses a TLS client without a certificate", async () => {
    expect(codeName((await statsWith(tls())).code)).toBe("UNAVAILABLE");
  });

  it("refuses a client whose certificate is signed by another CA", async () => {
    expect(codeName((await statsWith(tls("other"))).code)).toBe("UNAVAILABLE");
  });

  it("refuses a plaintext client", async () => {
    expect(codeName((await statsWith(grpc.credentials.createInsecure())).code)).toBe("UNAVAILABLE");
  });

  it("accepts a client whose certificate is signed by the CA", async () => {
    const outcome = await statsWith(tls("trusted"));
    expect(codeName(outcome.code)).toBe("OK");
    expect(outcome.response).toHaveProperty("totalWorkers");
  });

  it("works with the project's WorkerRegistryClient given mTLS credentials", async () => {
    const client = new WorkerRegistryClient({ address, credentials: tls("trusted"), retry: false });
    try {
      const worker = await client.registerWorker({ nodeId: "mtls-node", capabilities: ["mtls"], maxConcurrentTasks: 2 });
      expect(worker.nodeId).toBe("mtls-node");
      expect((await client.heartbeat(worker.id)).id).toBe(worker.id);
      expect((await client.discoverWorkers({ capabilities: ["mtls"] })).map((w) => w.id)).toEqual([worker.id]);
      await client.unregisterWorker(worker.id);
    } finally {
      client.close();
    }
  });

  it("the project's client without a client certificate is refused with UNAVAILABLE", async () => {
    const client = new WorkerRegistryClient({ address, credentials: tls(), retry: false });
    try {
      const error = await client.getRegistryStats().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(RegistryClientError);
      expect(codeName((error as RegistryClientError).code)).toBe("UNAVAILABLE");
    } finally {
      client.close();
    }
  });

  it("runs a WorkerNode over mutual TLS: registers, heartbeats on its stream, unregisters", async () => {
    const node = new WorkerNode({
      registration: { nodeId: "mtls-worker-node", capabilities: ["mtls-node"], maxConcurrentTasks: 1 },
      clientOptions: { address, credentials: tls("trusted") },
      heartbeatIntervalMs: 50,
    });
    try {
      const beats: number[] = [];
      node.on("heartbeat", (event) => beats.push(event.sequence));
      const worker = await node.start();
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("no heartbeat replies over mTLS")), 5000);
        node.on("heartbeat", () => {
          if (beats.length >= 2) {
            clearTimeout(timer);
            resolve();
          }
        });
      });
      await node.stop();
      const check = new SecClient(address, tls("trusted"));
      try {
        expect(codeName((await check.outcome("getWorker", { workerId: worker.id })).code)).toBe("NOT_FOUND");
      } finally {
        check.close();
      }
    } finally {
      await node.stop();
    }
  });
});

describe("TLS configuration errors", () => {
  it("refuses tlsClientCaFile without a certificate and key", async () => {
    await expect(
      startRegistryServer({ host: "127.0.0.1", port: 0, dbPath: join(dirs.make(), "r.db"), logLevel: "silent", security: { tlsClientCaFile: certs.caCert } }),
    ).rejects.toThrow(/tls-client-ca needs TLS/);
  });

  it("refuses a certificate without its key", async () => {
    await expect(
      startRegistryServer({ host: "127.0.0.1", port: 0, dbPath: join(dirs.make(), "r.db"), logLevel: "silent", security: { tlsCertFile: certs.serverCert } }),
    ).rejects.toThrow(/both --tls-cert and --tls-key/);
  });

  it("names the file it cannot read", async () => {
    const missing = join(certs.dir, "missing.key");
    await expect(
      startRegistryServer({
        host: "127.0.0.1",
        port: 0,
        dbPath: join(dirs.make(), "r.db"),
        logLevel: "silent",
        security: { tlsCertFile: certs.serverCert, tlsKeyFile: missing },
      }),
    ).rejects.toThrow(missing);
  });
});
