import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import { execFileSync } from "node:child_process";

/** Clock ticks per second of /proc/<pid>/stat's utime and stime (USER_HZ): 100 on every Linux we run on. */
const TICKS_PER_SECOND = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat. */
export function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  // The command name may contain spaces and parentheses: fields start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // fields[0] is field 3 (state); utime is field 14, stime field 15.
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

/**
 * Seconds the process's main thread (for Node, the event loop) spent
 * runnable but waiting for a CPU, from /proc/<pid>/schedstat: on a shared
 * machine, how long the neighbours kept the server from running. Every call
 * and ack that arrived meanwhile waited that long too.
 */
export function runQueueWaitSeconds(pid: number): number {
  try {
    return Number(fs.readFileSync(`/proc/${pid}/schedstat`, "utf8").split(" ")[1]) / 1e9;
  } catch {
    return Number.NaN;
  }
}

/** Resident set size in MiB, from /proc/<pid>/status (VmRSS). */
export function rssMiB(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  return match ? Number(match[1]) / 1024 : Number.NaN;
}

/** A CPU reading of several processes at one instant. */
export interface CpuMark {
  readonly atMs: number;
  readonly seconds: ReadonlyMap<number, number>;
  /** Run-queue wait, seconds, by pid. */
  readonly waiting: ReadonlyMap<number, number>;
}

export function markCpu(pids: readonly number[]): CpuMark {
  return {
    atMs: performance.now(),
    seconds: new Map(pids.map((pid) => [pid, cpuSeconds(pid)])),
    waiting: new Map(pids.map((pid) => [pid, runQueueWaitSeconds(pid)])),
  };
}

/** Share of the wall time between two marks that `pid`'s main thread spent waiting for a CPU. */
export function waitingBetween(a: CpuMark, b: CpuMark, pid: number): number {
  const wall = (b.atMs - a.atMs) / 1000;
  return ((b.waiting.get(pid) ?? Number.NaN) - (a.waiting.get(pid) ?? Number.NaN)) / wall;
}

/** Cores used by `pid` between two marks: CPU seconds / wall seconds. */
export function coresBetween(a: CpuMark, b: CpuMark, pid: number): number {
  const wall = (b.atMs - a.atMs) / 1000;
  return ((b.seconds.get(pid) ?? 0) - (a.seconds.get(pid) ?? 0)) / wall;
}

/** A free TCP port on 127.0.0.1 (bound and released at once: another process could take it, but rarely does). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A sleep that does not keep the process alive: for the losing side of a race. */
export const timeout = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());

/** The machine: CPU model, cores, memory, kernel, Node, load average now. */
export function describeMachine(): MachineInfo {
  const cpuinfo = fs.readFileSync("/proc/cpuinfo", "utf8");
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? os.cpus()[0]?.model ?? "unknown";
  const mhz = /^cpu MHz\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim();
  const meminfo = fs.readFileSync("/proc/meminfo", "utf8");
  const memKb = Number(/^MemTotal:\s+(\d+)/m.exec(meminfo)?.[1] ?? 0);
  const load = fs.readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).map(Number);
  let etcdVersion: string | undefined;
  return {
    cpuModel: model,
    cpuMhz: mhz,
    cores: os.availableParallelism(),
    memoryGiB: Math.round((memKb / 1024 / 1024) * 10) / 10,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    loadAverage: load as [number, number, number],
    etcdVersion,
  };
}

export interface MachineInfo {
  cpuModel: string;
  cpuMhz: string | undefined;
  cores: number;
  memoryGiB: number;
  kernel: string;
  node: string;
  loadAverage: [number, number, number];
  etcdVersion: string | undefined;
}
