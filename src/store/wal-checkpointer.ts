import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";

/** A background thread that checkpoints a WAL database. */
export interface WalCheckpointer {
  /** Stops the thread; resolves once it has exited. */
  stop(): Promise<void>;
}

// Runs in the thread: its own connection, PASSIVE checkpoints only (they never block the writer).
const THREAD_SOURCE = `
const { workerData, parentPort } = require("node:worker_threads");
const Database = require(workerData.driver);
const db = new Database(workerData.path);
db.pragma("busy_timeout = 0");
const timer = setInterval(() => {
  try { db.pragma("wal_checkpoint(PASSIVE)"); } catch { /* busy or faulted storage: the next tick retries */ }
}, workerData.intervalMs);
parentPort.on("message", () => { clearInterval(timer); db.close(); process.exit(0); });
`;

/**
 * Copies the WAL into the database file from a thread of its own, every
 * `intervalMs`, so that the serving thread's commits never stop to do it (an
 * automatic checkpoint runs inside the commit that crosses its threshold and
 * holds the event loop for milliseconds). The serving connection keeps a high
 * automatic threshold as a safety net should this thread fall behind.
 */
export function startWalCheckpointer(path: string, intervalMs: number): WalCheckpointer {
  const driver = createRequire(import.meta.url).resolve("better-sqlite3");
  const worker = new Worker(THREAD_SOURCE, { eval: true, workerData: { path, intervalMs, driver } });
  // A failure of the thread must not take the server down: the serving connection's own threshold takes over.
  worker.on("error", () => undefined);
  worker.unref();
  let stopping: Promise<void> | undefined;
  return {
    stop() {
      stopping ??= new Promise<void>((resolve) => {
        // Keep the process alive until the thread has closed its connection.
        worker.ref();
        worker.once("exit", () => resolve());
        worker.postMessage("stop");
        // Already gone (an error): terminate resolves at once.
        setTimeout(() => void worker.terminate(), 1000).unref();
      });
      return stopping;
    },
  };
}
