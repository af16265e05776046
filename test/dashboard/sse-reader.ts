/** One server-sent event, its JSON parsed. */
export interface SseMessage {
  readonly name: string;
  readonly data: any;
  /** Date.now() when it was parsed. */
  readonly receivedAtMs: number;
}

/**
 * Reads a server-sent-event stream as a browser's fetch would, and hands its
 * messages out in order: tests wait for the next one, or for one matching a
 * predicate, with a deadline.
 */
export class SseReader {
  private readonly queue: SseMessage[] = [];
  private waiter: (() => void) | undefined;
  private done = false;
  private failure: unknown;
  /** Resolves when the server ends the stream. */
  readonly ended: Promise<void>;

  private constructor(
    readonly response: Response,
    private readonly controller: AbortController,
  ) {
    this.ended = this.read().catch((error: unknown) => {
      this.failure = error;
    });
  }

  /** Opens the stream. @throws unless the answer is 200 with text/event-stream. */
  static async open(url: string, headers: Record<string, string> = {}): Promise<SseReader> {
    const controller = new AbortController();
    const response = await fetch(url, { headers: { accept: "text/event-stream", ...headers }, signal: controller.signal });
    if (response.status !== 200 || !response.headers.get("content-type")?.startsWith("text/event-stream")) {
      controller.abort();
      throw new Error(`expected an event stream from ${url}, got ${response.status} ${response.headers.get("content-type")}`);
    }
    return new SseReader(response, controller);
  }

  /** The next message, whatever it is. */
  next(timeoutMs = 5000): Promise<SseMessage> {
    return this.until(() => true, timeoutMs, "any message");
  }

  /** The next message with this name; the ones before it are consumed. */
  nextNamed(name: string, timeoutMs = 5000): Promise<SseMessage> {
    return this.until((m) => m.name === name, timeoutMs, `a ${name} message`);
  }

  /** The first message that matches; the ones before it are consumed. */
  async until(matches: (message: SseMessage) => boolean, timeoutMs = 5000, what = "a matching message"): Promise<SseMessage> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      while (this.queue.length > 0) {
        const message = this.queue.shift()!;
        if (matches(message)) return message;
      }
      if (this.done) throw new Error(`the stream ended before ${what}${this.failure ? `: ${String(this.failure)}` : ""}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${what} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /** Messages received and not yet consumed. */
  get pending(): readonly SseMessage[] {
    return this.queue;
  }

  close(): void {
    this.controller.abort();
  }

  private async read(): Promise<void> {
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      for await (const chunk of this.response.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        let end: number;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          this.parse(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    } finally {
      this.done = true;
      this.wake();
    }
  }

  private parse(block: string): void {
    let name = "message";
    const data: string[] = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event: ")) name = line.slice("event: ".length);
      else if (line.startsWith("data: ")) data.push(line.slice("data: ".length));
    }
    if (data.length === 0) return;
    this.queue.push({ name, data: JSON.parse(data.join("\n")), receivedAtMs: Date.now() });
    this.wake();
  }

  private wake(): void {
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.();
  }
}
