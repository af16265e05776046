import { createServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SseStream } from "../../src/dashboard/sse-stream.js";

const BUDGET_BYTES = 1024 * 1024;
const MESSAGE = JSON.stringify({ filler: "x".repeat(256 * 1024) });

describe("SseStream", () => {
  let port: number;
  let response: ServerResponse;
  let stream: SseStream;
  let resyncs = 0;
  const server = createServer((_request, res) => {
    response = res;
    stream = new SseStream(res, BUDGET_BYTES, (s) => {
      resyncs++;
      s.send("snapshot", JSON.stringify({ fresh: true }));
      s.close();
    });
  });
  beforeAll(async () => {
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it("bounds what it buffers for a reader that stopped reading, then resynchronises it once it drains", async () => {
    const socket = connect(port, "127.0.0.1");
    const chunks: Buffer[] = [];
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    await new Promise((resolve) => socket.once("connect", resolve));
    socket.write("GET /events HTTP/1.1\r\nhost: test\r\naccept: text/event-stream\r\nconnection: close\r\n\r\n");
    await waitFor(() => stream !== undefined && chunks.length > 0);
    socket.pause();

    // 16 MiB for a reader that reads nothing: far beyond what the kernel's socket buffers take.
    for (let i = 0; i < 64; i++) {
      stream.send("events", MESSAGE);
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(response.writableLength).toBeLessThan(BUDGET_BYTES + 2 * MESSAGE.length);
    expect(resyncs).toBe(0);

    socket.resume();
    await new Promise((resolve) => socket.once("end", resolve));
    expect(resyncs).toBe(1);
    const text = Buffer.concat(chunks).toString("utf8");
    const body = text.slice(text.indexOf("\r\n\r\n") + 4);
    // Each message is one chunk of the chunked body: its lines are never split.
    const messages = [...body.matchAll(/event: (\w+)\ndata: /g)].map((m) => m[1]);
    expect(messages.length).toBeLessThan(64);
    expect(messages.at(-1)).toBe("snapshot");
    expect(body).toContain('data: {"fresh":true}\n\n');
  });
});

async function waitFor(condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 2000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
