import type { ServerResponse } from "node:http";

/**
 * One server-sent-events response, with a bound on what it buffers for a
 * reader that does not keep up.
 *
 * Node buffers whatever a response is given, so a stalled browser would grow
 * the server's memory without end. Instead, once more than the budget is
 * waiting, the stream stops writing and drops messages until the socket
 * drains, then asks for a resynchronisation (`onResync`): the feed sends a
 * fresh snapshot, which makes every dropped message moot.
 */
export class SseStream {
  private resyncing = false;
  private ended = false;
  private budgetBytes: number;
  private readonly closeListeners: (() => void)[] = [];

  /**
   * Writes the SSE headers at once, so the browser knows the stream is open
   * before the first message.
   * @param maxBufferedBytes bytes that may wait for the reader before it is
   *   resynchronised; raised to twice the largest message, so that a snapshot
   *   larger than the budget cannot trigger a resynchronisation of its own.
   */
  constructor(
    private readonly response: ServerResponse,
    maxBufferedBytes: number,
    private readonly onResync: (stream: SseStream) => void,
  ) {
    this.budgetBytes = maxBufferedBytes;
    response.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-store",
      // Reverse proxies (nginx) would otherwise hold events back to fill a buffer.
      "x-accel-buffering": "no",
      "x-content-type-options": "nosniff",
    });
    response.flushHeaders();
    response.on("drain", () => {
      if (!this.resyncing || this.ended) return;
      this.resyncing = false;
      this.onResync(this);
    });
    response.on("close", () => this.end());
  }

  /** True once the response has ended, by either side. */
  get closed(): boolean {
    return this.ended;
  }

  /**
   * Sends one event; `json` must be one line (JSON.stringify's output is).
   * Dropped while the stream waits to be resynchronised.
   */
  send(name: string, json: string): void {
    if (this.ended || this.resyncing) return;
    if (this.response.writableLength > this.budgetBytes) {
      this.resyncing = true;
      return;
    }
    this.budgetBytes = Math.max(this.budgetBytes, 2 * json.length);
    this.response.write(`event: ${name}\ndata: ${json}\n\n`);
  }

  /** Calls `listener` once when the stream ends, whoever ends it. */
  onClose(listener: () => void): void {
    if (this.ended) listener();
    else this.closeListeners.push(listener);
  }

  /** Ends the response (the browser reconnects on its own if it is still open). */
  close(): void {
    if (!this.response.writableEnded) this.response.end();
    this.end();
  }

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    for (const listener of this.closeListeners.splice(0)) listener();
  }
}
