import type { FleetCommandIo } from "../../src/cli/fleet-args.js";

/** Fleet-command io that keeps what a command writes, line by line. */
export function capture(options: { env?: NodeJS.ProcessEnv; now?: () => number; signal?: AbortSignal } = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const io: FleetCommandIo = {
    env: options.env ?? {},
    ...(options.now === undefined ? {} : { now: options.now }),
    ...(options.signal === undefined ? {} : { signal: options.signal }),
    stdout: (text) => out.push(text),
    stderr: (text) => err.push(text),
  };
  return { io, out, err, stdout: () => out.join("\n"), stderr: () => err.join("\n") };
}
