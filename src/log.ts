import { pino, type Logger as PinoLogger, type LevelWithSilent } from "pino";

/** Log levels accepted by `--log-level`. */
export const LOG_LEVELS: readonly LevelWithSilent[] = ["trace", "debug", "info", "warn", "error", "fatal", "silent"];

/**
 * The process logger: JSON lines on stdout, one constant message per event
 * with its facts as fields.
 */
export function createLogger(level: LevelWithSilent = "info", destination?: NodeJS.WritableStream): PinoLogger {
  return pino({ level, base: { service: "worker-registry" } }, destination ?? process.stdout);
}
