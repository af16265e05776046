/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`): self time by
 * function and by file, the largest first.
 *
 *   node dist/bench/profile-summary.js <file.cpuprofile> [--top 25] [--stalls]
 *
 * --stalls also lists the longest stretches without an idle sample: what
 * blocked the event loop, so what every waiting ack was queued behind.
 */
import fs from "node:fs";
import path from "node:path";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface ProfileSummary {
  readonly file: string;
  readonly totalMs: number;
  readonly byFunction: { name: string; ms: number; share: number }[];
  readonly byFile: { name: string; ms: number; share: number }[];
  /** Inclusive time (self + callees) of the repository's own functions (dist/), the largest first. */
  readonly ownInclusive: { name: string; ms: number; share: number }[];
}

/** Shortens a script URL to a path relative to the repository, or node:internal. */
function shortUrl(url: string): string {
  if (url === "") return "(native)";
  const cleaned = url.replace(/^file:\/\//, "");
  const modules = cleaned.lastIndexOf("node_modules/");
  if (modules >= 0) return cleaned.slice(modules);
  const dist = cleaned.indexOf("/dist/");
  if (dist >= 0) return cleaned.slice(dist + 1);
  return cleaned;
}

export function summarizeProfile(file: string, top = 25): ProfileSummary {
  const profile = JSON.parse(fs.readFileSync(file, "utf8")) as Profile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfUs = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) selfUs.set(samples[i]!, (selfUs.get(samples[i]!) ?? 0) + (deltas[i] ?? 0));
  const fn = new Map<string, number>();
  const files = new Map<string, number>();
  let total = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (node === undefined) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    if (functionName === "(idle)" || functionName === "(program)") continue;
    total += us;
    const where = shortUrl(url);
    const key = `${functionName || "(anonymous)"} ${where}${url ? `:${lineNumber + 1}` : ""}`;
    fn.set(key, (fn.get(key) ?? 0) + us);
    const fileKey = where.startsWith("node_modules/") ? where.split("/").slice(0, where.startsWith("node_modules/@") ? 3 : 2).join("/") : where;
    files.set(fileKey, (files.get(fileKey) ?? 0) + us);
  }
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const inclusive = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const leaf = byId.get(id);
    if (leaf === undefined || leaf.callFrame.functionName === "(idle)" || leaf.callFrame.functionName === "(program)") continue;
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const node = byId.get(at)!;
      if (!node.callFrame.url.includes("/dist/") || node.callFrame.url.includes("node_modules")) continue;
      const key = `${node.callFrame.functionName || "(anonymous)"} ${shortUrl(node.callFrame.url)}:${node.callFrame.lineNumber + 1}`;
      if (seen.has(key)) continue;
      seen.add(key);
      inclusive.set(key, (inclusive.get(key) ?? 0) + us);
    }
  }
  const rank = (map: Map<string, number>) =>
    [...map]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => ({ name, ms: us / 1000, share: total === 0 ? 0 : us / total }));
  return { file, totalMs: total / 1000, byFunction: rank(fn), byFile: rank(files), ownInclusive: rank(inclusive) };
}

/** A stretch of consecutive non-idle samples: the event loop was busy (blocked) that long. */
export interface BusyStretch {
  readonly ms: number;
  readonly atMs: number;
  /** The functions of the repository's own code (dist/) on the stack longest during the stretch, inclusive. */
  readonly inclusive: { name: string; ms: number }[];
  readonly self: { name: string; ms: number }[];
}

/**
 * The longest stretches without an idle sample: what blocked the event loop
 * (and so every ack waiting behind it) and for how long.
 */
export function longestBusyStretches(file: string, count = 5, minMs = 10): BusyStretch[] {
  const profile = JSON.parse(fs.readFileSync(file, "utf8")) as Profile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  const label = (node: ProfileNode) => `${node.callFrame.functionName || "(anonymous)"} ${shortUrl(node.callFrame.url)}:${node.callFrame.lineNumber + 1}`;
  const stretches: BusyStretch[] = [];
  let start = -1;
  let elapsedUs = 0;
  let startUs = 0;
  const close = (end: number) => {
    if (start < 0) return;
    let us = 0;
    const inclusive = new Map<string, number>();
    const self = new Map<string, number>();
    for (let i = start; i < end; i++) {
      const d = deltas[i + 1] ?? 0;
      us += d;
      const leaf = byId.get(samples[i]!)!;
      self.set(label(leaf), (self.get(label(leaf)) ?? 0) + d);
      const seen = new Set<string>();
      for (let id: number | undefined = samples[i]; id !== undefined; id = parent.get(id)) {
        const node = byId.get(id)!;
        if (!node.callFrame.url.includes("/dist/") || node.callFrame.url.includes("node_modules")) continue;
        const name = label(node);
        if (seen.has(name)) continue;
        seen.add(name);
        inclusive.set(name, (inclusive.get(name) ?? 0) + d);
      }
    }
    if (us / 1000 >= minMs) {
      const top = (map: Map<string, number>) =>
        [...map]
          .sort((a, b) => b[1] - a[1])
          .slice(0, 4)
          .map(([name, v]) => ({ name, ms: v / 1000 }));
      stretches.push({ ms: us / 1000, atMs: startUs / 1000, inclusive: top(inclusive), self: top(self) });
    }
    start = -1;
  };
  for (let i = 0; i < samples.length; i++) {
    elapsedUs += deltas[i] ?? 0;
    const name = byId.get(samples[i]!)?.callFrame.functionName;
    const idle = name === "(idle)";
    if (idle) close(i);
    else if (start < 0) {
      start = i;
      startUs = elapsedUs;
    }
  }
  close(samples.length);
  return stretches.sort((a, b) => b.ms - a.ms).slice(0, count);
}

export function formatBusyStretches(stretches: readonly BusyStretch[]): string {
  const lines = ["longest stretches without an idle sample (event loop blocked):"];
  for (const s of stretches) {
    lines.push(`  ${s.ms.toFixed(1).padStart(7)} ms at +${(s.atMs / 1000).toFixed(1)} s`);
    for (const f of s.inclusive) lines.push(`      incl ${f.ms.toFixed(1).padStart(6)} ms  ${f.name}`);
    for (const f of s.self) lines.push(`      self ${f.ms.toFixed(1).padStart(6)} ms  ${f.name}`);
  }
  return lines.join("\n");
}

export function formatProfile(summary: ProfileSummary): string {
  const lines = [`${path.basename(summary.file)}: ${summary.totalMs.toFixed(0)} ms of CPU samples (idle and (program) excluded)`, "", "self time by function:"];
  for (const row of summary.byFunction) lines.push(`  ${(row.share * 100).toFixed(1).padStart(5)}%  ${row.ms.toFixed(0).padStart(7)} ms  ${row.name}`);
  lines.push("", "self time by file or package:");
  for (const row of summary.byFile) lines.push(`  ${(row.share * 100).toFixed(1).padStart(5)}%  ${row.ms.toFixed(0).padStart(7)} ms  ${row.name}`);
  lines.push("", "inclusive time of the repository's own functions:");
  for (const row of summary.ownInclusive) lines.push(`  ${(row.share * 100).toFixed(1).padStart(5)}%  ${row.ms.toFixed(0).padStart(7)} ms  ${row.name}`);
  return lines.join("\n");
}

if (process.argv[1] && import.meta.url === new URL(`file://${path.resolve(process.argv[1])}`).href) {
  const file = process.argv[2];
  if (!file) {
    console.error("usage: profile-summary <file.cpuprofile> [--top N]");
    process.exit(2);
  }
  const topArg = process.argv.indexOf("--top");
  console.log(formatProfile(summarizeProfile(file, topArg > 0 ? Number(process.argv[topArg + 1]) : 25)));
  if (process.argv.includes("--stalls")) console.log("\n" + formatBusyStretches(longestBusyStretches(file, 8)));
}
