import { pino, type Logger as PinoLogger, type LevelWithSilent } from "pino";

/** Log levels accepted by `--log-level`. */
export const LOG_LEVELS: readonly LevelWithSilent[] = ["trace", "debug", "info", "warn", "error", "fatal", "silent"];

/**
 * Fields that may hold a secret, wherever they appear (top level or one level
 * down): the code never logs them on purpose, and this is the net if it ever
 * does by accident.
 */
export const REDACTED_PATHS: readonly string[] = [
  "authorization",
  "*.authorization",
  "token",
  "*.token",
  "workerToken",
  "*.workerToken",
  "metadata",
  "*.metadata",
  "headers.authorization",
  "*.headers.authorization",
];

/**
 * The process logger: JSON lines on stdout, one constant message per event
 * with its facts as fields. Secrets are redacted (see {@link REDACTED_PATHS}).
 */
export function createLogger(level: LevelWithSilent = "info", destination?: NodeJS.WritableStream): PinoLogger {
  return pino(
    { level, base: { service: "worker-registry" }, redact: { paths: [...REDACTED_PATHS], censor: "[redacted]" } },
    destination ?? process.stdout,
  );
}
