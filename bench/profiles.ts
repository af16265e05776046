/** `--profile`: where each server writes its CPU profile, and the summary of each profile once its server has stopped. */
import fs from "node:fs";
import path from "node:path";
import { formatBusyStretches, formatProfile, longestBusyStretches, summarizeProfile, type ProfileSummary } from "./profile-summary.js";
import { log } from "./progress.js";

export interface Profiles {
  /** Summaries by label, filled by {@link Profiles.collect}; the results file saves them. */
  readonly summaries: Record<string, ProfileSummary>;
  /** A fresh directory for the profile of the process labelled `label`, or undefined when not profiling. */
  dirFor(label: string): string | undefined;
  /** Summarises (into `summaries` and the log) the profile written under `label`, if there is one; call after its process exited. */
  collect(label: string): void;
}

/** Profiles under `<workDir>/profiles/<label>/`; with `enabled` false, nothing is profiled and nothing collected. */
export function createProfiles(options: { readonly workDir: string; readonly enabled: boolean }): Profiles {
  const summaries: Record<string, ProfileSummary> = {};
  const dirOf = (label: string) => path.join(options.workDir, "profiles", label);
  return {
    summaries,
    dirFor(label) {
      if (!options.enabled) return undefined;
      fs.mkdirSync(dirOf(label), { recursive: true });
      return dirOf(label);
    },
    collect(label) {
      const dir = dirOf(label);
      if (!options.enabled || !fs.existsSync(dir)) return;
      const file = fs.readdirSync(dir).find((f) => f.endsWith(".cpuprofile"));
      if (!file) return;
      const summary = summarizeProfile(path.join(dir, file), 20);
      summaries[label] = summary;
      log(`profile ${label}: ${path.join(dir, file)}\n${formatProfile(summary)}\n\n${formatBusyStretches(longestBusyStretches(path.join(dir, file), 4))}`);
    },
  };
}
