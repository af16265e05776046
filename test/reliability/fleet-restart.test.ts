import { status } from "@grpc/grpc-js";
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { WorkerRegistryClient } from "../../clients/typescript/src/worker-registry-client.js";
import { RawRegistryClient } from "../support/grpc-test-client.js";
import { tempDirs } from "../support/temp-dir.js";
import { freePort, sleep, startRegistry, waitFor, type RegistryProcess } from "./support/server.js";

/**
 * A few hundred WorkerNode runtimes, in host processes of their own, each on
 * its own connection, while the registry under them is stopped and restarted
 * on the same port and database, gracefully and by kill -9.
 */

const FIXTURE = fileURLToPath(new URL("./fixtures/fleet-node.mjs", import.meta.url));
const HOSTS = 6;
const NODES_PER_HOST = 50;
const FLEET = HOSTS * NODES_PER_HOST;
/** How the registry goes down each time. */
const RESTARTS: readonly NodeJS.Signals[] = ["SIGKILL", "SIGTERM", "SIGKILL"];
/** How long it stays down before it is started again. */
const OUTAGE_MS = 500;

interface NodeEvent {
  event: "registered" | "connected" | "reregistered" | "reconnecting" | "started";
  node: string;
  id: string;
  t: number;
  reconnects?: number;
}

/** What an orchestrator saw while the registry went away and came back. */
interface ReadLog {
  ok: number;
  codes: Map<string, number>;
}

/** Reads a random known worker again and again until stopped, recording every outcome. */
function readLoop(read: (id: string) => Promise<unknown>, ids: readonly string[], log: ReadLog): { stop(): Promise<void> } {
  let running = true;
  const loop = (async () => {
    while (running) {
      try {
        await read(ids[Math.floor(Math.random() * ids.length)]!);
        log.ok++;
      } catch (error) {
        const code = status[(error as { code: status }).code] ?? String(error);
        log.codes.set(code, (log.codes.get(code) ?? 0) + 1);
      }
      await sleep(20);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
    },
  };
}

describe("a fleet of WorkerNode runtimes across registry restarts", () => {
  const dirs = tempDirs();
  const hosts: ChildProcess[] = [];
  let server: RegistryProcess | undefined;

  afterAll(async () => {
    hosts.forEach((host) => host.kill("SIGKILL"));
    await server?.stop("SIGKILL");
    dirs.cleanup();
  });

  it(`${FLEET} workers come back healthy with their ids after ${RESTARTS.join(", ")}; reconnections spread out; reads see UNAVAILABLE, never lost state`, { timeout: 150_000 }, async () => {
    const dbPath = join(dirs.make("registry-fleet-"), "registry.db");
    const port = await freePort();
    const address = `127.0.0.1:${port}`;
    // Health that means something within the test: a worker not heard from for 5 s is degraded.
    const args = ["--db", dbPath, "--heartbeat-interval", "1s", "--healthy-threshold", "5s", "--degraded-threshold", "10s", "--worker-ttl", "60s"];
    server = await startRegistry(args, { port });

    const events: NodeEvent[] = [];
    for (let host = 0; host < HOSTS; host++) {
      const child = spawn(process.execPath, [FIXTURE], {
        env: { ...process.env, REGISTRY_ADDRESS: address, HOST_ID: String(host), NODES: String(NODES_PER_HOST), RECONNECT_BASE_MS: "300", RECONNECT_MAX_MS: "2000" },
        stdio: ["ignore", "pipe", "inherit"],
      });
      createInterface({ input: child.stdout! }).on("line", (line) => events.push(JSON.parse(line) as NodeEvent));
      hosts.push(child);
    }
    const connectedSince = (sinceMs: number) => new Map(events.filter((e) => e.event === "connected" && e.t >= sinceMs).map((e) => [e.node, e]));
    await waitFor(`all ${FLEET} nodes to register and heartbeat`, () => connectedSince(0).size === FLEET, 60_000, 100);

    const ids = new Map(events.filter((e) => e.event === "registered").map((e) => [e.node, e.id]));
    expect(ids.size).toBe(FLEET);
    const idList = [...ids.values()];
    const admin = new WorkerRegistryClient({ address, retry: { maxAttempts: 20, baseMs: 100, maxMs: 1000 }, channelOptions: { "grpc.channel_id": "admin" } });
    const served = async () => new Map((await admin.discoverWorkers()).map((w) => [w.id, w]));
    expect([...(await served()).keys()].sort()).toEqual([...idList].sort());

    const spreads: string[] = [];
    try {
      for (const [round, signal] of RESTARTS.entries()) {
        // Orchestrators read throughout: one with the client's retries, one without, each on its own connection.
        const retrying = new WorkerRegistryClient({
          address,
          retry: { maxAttempts: 20, baseMs: 100, maxMs: 1000 },
          channelOptions: { "grpc.channel_id": `retrying-${round}`, "grpc.initial_reconnect_backoff_ms": 100, "grpc.max_reconnect_backoff_ms": 500 },
        });
        const bare = new RawRegistryClient(address, { "grpc.channel_id": `bare-${round}`, "grpc.initial_reconnect_backoff_ms": 100, "grpc.max_reconnect_backoff_ms": 500 });
        const retried: ReadLog = { ok: 0, codes: new Map() };
        const unretried: ReadLog = { ok: 0, codes: new Map() };
        const loops = [
          readLoop((id) => retrying.getWorker(id), idList, retried),
          readLoop((id) => bare.call("getWorker", { workerId: id }), idList, unretried),
        ];
        await sleep(200);

        const exit = await server.stop(signal);
        expect(signal === "SIGTERM" ? exit.code : exit.signal, `exit after ${signal}`).toBe(signal === "SIGTERM" ? 0 : "SIGKILL");
        const downAt = Date.now();
        await sleep(OUTAGE_MS);
        server = await startRegistry(args, { port });
        const upAt = Date.now();

        // Every node is back on a new stream, with its old id, without registering again.
        const back = await waitFor(`all ${FLEET} nodes to reconnect after ${signal}`, () => {
          const connected = connectedSince(downAt);
          return connected.size === FLEET && connected;
        }, 30_000, 100).catch((error: Error) => {
          throw new Error(`${error.message}: ${connectedSince(downAt).size} back`);
        });
        for (const [node, event] of back) expect(event.id, node).toBe(ids.get(node));
        expect(events.filter((e) => e.event === "reregistered"), "re-registrations").toEqual([]);

        // Seen from the registry: the same ids, no duplicates, all healthy on a heartbeat received since the restart.
        const now = await served();
        expect(now.size).toBe(FLEET);
        expect([...now.keys()].sort()).toEqual([...idList].sort());
        const stale = [...now.values()].filter((w) => w.healthStatus !== "healthy" || w.lastHeartbeatAt.getTime() < upAt);
        expect(stale.map((w) => `${w.nodeId} ${w.healthStatus} ${w.lastHeartbeatAt.toISOString()}`)).toEqual([]);
        expect((await admin.getRegistryStats()).totalWorkers).toBe(FLEET);

        // Reconnections spread out rather than arrive at once (full-jitter backoff): measured from the first heartbeat of each node.
        const offsets = [...back.values()].map((e) => e.t - upAt).sort((a, b) => a - b);
        const at = (p: number) => offsets[Math.min(offsets.length - 1, Math.floor(p * offsets.length))]!;
        let busiest = 0;
        for (let i = 0, j = 0; i < offsets.length; i++) {
          while (offsets[i]! - offsets[j]! > 100) j++;
          busiest = Math.max(busiest, i - j + 1);
        }
        spreads.push(`${signal}: p10 ${at(0.1)} ms, p50 ${at(0.5)} ms, p90 ${at(0.9)} ms, busiest 100 ms ${busiest}/${FLEET}`);
        expect(at(0.9) - at(0.1), spreads.at(-1)).toBeGreaterThan(500);
        expect(busiest, spreads.at(-1)).toBeLessThan(FLEET * 0.35);

        // The orchestrators: the bare one saw the outage as UNAVAILABLE, the retrying one rode it out; nobody saw lost state.
        await Promise.all(loops.map((loop) => loop.stop()));
        retrying.close();
        bare.close();
        expect(unretried.codes.get("UNAVAILABLE") ?? 0, `bare reads: ${JSON.stringify([...unretried.codes])}`).toBeGreaterThan(0);
        expect([...unretried.codes.keys()].filter((code) => code !== "UNAVAILABLE"), "bare reads failing otherwise").toEqual([]);
        expect([...retried.codes], "retried reads that failed").toEqual([]);
        expect(retried.ok).toBeGreaterThan(0);
      }
      console.log(`reconnection after each restart (from the registry being up again): ${spreads.join("; ")}`);
    } finally {
      admin.close();
    }
  });
});
