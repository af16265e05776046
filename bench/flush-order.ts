/**
 * What the order of a heartbeat flush costs on SQLite: the registry's own
 * flush statement (src/store/sqlite-statements.ts), in chunks of the store's
 * heartbeatBatchRows, one transaction each, over a freshly seeded fleet,
 * with the rows of each chunk picked in arrival order (a fixed shuffle, as a
 * paced fleet beats) or in registration order (src/domain/liveness.ts sorts
 * a flush so). Prints the CPU per row and the longest chunk of each.
 *
 *   npm run build && node dist/bench/flush-order.js [workers=10000] [rounds=5]
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { storeSql } from "../src/store/sqlite-statements.js";
import { SqliteStore } from "../src/store/sqlite-store.js";
import { removeDatabase, seedDatabase } from "./seed.js";

const workers = Number(process.argv[2] ?? 10_000);
const rounds = Number(process.argv[3] ?? 5);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "flush-order-"));
const dbPath = path.join(dir, "registry.db");
seedDatabase(dbPath, workers);
const db = new Database(dbPath);
db.pragma("journal_mode = WAL");
db.pragma("synchronous = NORMAL");
const probe = new SqliteStore(new Database(":memory:"));
const chunkRows = probe.heartbeatBatchRows;
await probe.close();
const rows = db.prepare("SELECT id, registered_at_ms AS registeredAtMs FROM workers").all() as Array<{ id: string; registeredAtMs: number }>;
const write = db.prepare(storeSql.writeHeartbeats);
const flush = db.transaction((json: string) => write.run(json));

// A fixed shuffle from a fixed seed (a linear congruential generator): the same arrival order every round, as a paced fleet's.
let state = 42;
const shuffled = [...rows];
for (let i = shuffled.length - 1; i > 0; i--) {
  state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
  const j = state % (i + 1);
  [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
}
const registered = [...rows].sort((a, b) => a.registeredAtMs - b.registeredAtMs || (a.id < b.id ? -1 : 1));

let beatAtMs = Date.now();
function round(order: typeof rows): { usPerRow: number; longestChunkMs: number } {
  beatAtMs += 1000;
  const started = process.cpuUsage();
  let longestChunkMs = 0;
  for (let from = 0; from < order.length; from += chunkRows) {
    const chunkStarted = performance.now();
    flush(JSON.stringify(order.slice(from, from + chunkRows).map((row) => [row.id, beatAtMs])));
    longestChunkMs = Math.max(longestChunkMs, performance.now() - chunkStarted);
  }
  const cpu = process.cpuUsage(started);
  return { usPerRow: (cpu.user + cpu.system) / order.length, longestChunkMs };
}

console.log(`${workers} seeded workers, chunks of ${chunkRows} rows, ${rounds} rounds each (alternating), CPU per row written:`);
const results = { "arrival order": [] as number[], "registration order": [] as number[] };
const longest = { "arrival order": 0, "registration order": 0 };
for (let i = 0; i < rounds; i++) {
  for (const [name, order] of [["arrival order", shuffled], ["registration order", registered]] as const) {
    const { usPerRow, longestChunkMs } = round(order);
    results[name].push(usPerRow);
    longest[name] = Math.max(longest[name], longestChunkMs);
  }
}
for (const [name, values] of Object.entries(results)) {
  const sorted = [...values].sort((a, b) => a - b);
  console.log(`  ${name}: median ${sorted[Math.floor(sorted.length / 2)]!.toFixed(2)} µs/row (rounds: ${values.map((v) => v.toFixed(1)).join(", ")}), longest chunk ${longest[name as keyof typeof longest].toFixed(2)} ms`);
}
db.close();
removeDatabase(dbPath);
fs.rmSync(dir, { recursive: true, force: true });
