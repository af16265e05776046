import { InvalidArgumentError } from "./errors.js";
import type { HealthStatus } from "./health.js";
import { LabelSelector, validateLabels, validateVersion, type Labels } from "./labels.js";
import type { RegistryLimits } from "./registry-options.js";

// Control characters (C0, C1, DEL), format characters (bidi overrides and isolates, zero-width characters, the
// byte-order mark, soft hyphens) and line and paragraph separators: invisible, or able to make a log line, a
// terminal or the dashboard show something other than what is stored. A classic injection vector.
const INVISIBLE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u;
const INVISIBLE_NAME = "control, format or line-separator characters";
const WHITESPACE_OR_INVISIBLE = /[\s\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u;
const WHITESPACE_OR_INVISIBLE_NAME = "white space, control, format or line-separator characters";
const INVISIBLE_GLOBAL = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu;
/** One entry per health status, at most. */
const MAX_HEALTH_STATUSES = 3;
const WORKER_ID = /^worker-\d{1,16}-[a-z0-9]{1,32}$/;

/** A registration as the caller sends it. */
export interface RegistrationInput {
  readonly nodeId: string;
  readonly capabilities: readonly string[];
  readonly maxConcurrentTasks: number;
  /** Kubernetes' rules; none when absent. */
  readonly labels?: Labels;
  /** "" or absent: unversioned. */
  readonly version?: string;
}

/** A worker filter as the caller sends it. Empty or zero fields do not filter. */
export interface FilterInput {
  readonly capabilities: readonly string[];
  readonly healthStatuses: readonly HealthStatus[];
  readonly minAvailableCapacity: number;
  /** Kubernetes' set-based syntax; "" or absent matches every worker. */
  readonly labelSelector?: string;
  /** Any of; empty or absent matches every worker. */
  readonly versions?: readonly string[];
}

/** A filter that passed validation, its selector parsed once. */
export interface CompiledFilter extends FilterInput {
  readonly selector: LabelSelector;
  readonly versions: readonly string[];
  /** Whether the labels or the version narrow it: a check per candidate worker. */
  readonly narrowsLabels: boolean;
}

/** At most this many versions in a filter. */
const MAX_FILTER_VERSIONS = 64;
/** At most this many characters in a label selector. */
const MAX_SELECTOR_LENGTH = 4096;

/** @throws InvalidArgumentError naming the first field that breaks a rule. */
export function validateRegistration(input: RegistrationInput, limits: RegistryLimits): void {
  validateText("node_id", input.nodeId, limits.maxNodeIdLength, INVISIBLE, INVISIBLE_NAME);
  if (input.nodeId.trim() === "") throw new InvalidArgumentError("node_id", "must not be blank");
  const { capabilities } = input;
  if (capabilities.length === 0) throw new InvalidArgumentError("capabilities", "must name at least one capability");
  if (capabilities.length > limits.maxCapabilities) {
    throw new InvalidArgumentError("capabilities", `must have at most ${limits.maxCapabilities} entries, got ${capabilities.length}`);
  }
  validateCapabilities(capabilities, limits);
  validateIntegerRange("max_concurrent_tasks", input.maxConcurrentTasks, 1, limits.maxConcurrentTasksLimit);
  validateLabels(input.labels ?? {});
  validateVersion(input.version ?? "");
}

/** @throws InvalidArgumentError if the id is empty or not of the form worker-<timestamp>-<random>. */
export function validateWorkerId(workerId: string, field = "worker_id"): void {
  if (workerId === "") throw new InvalidArgumentError(field, "is required");
  if (!WORKER_ID.test(workerId)) {
    throw new InvalidArgumentError(field, `must look like worker-<timestamp>-<random>, got ${quote(workerId)}`);
  }
}

/** @throws InvalidArgumentError if the duration is negative, not finite or beyond the limit. */
export function validateDuration(durationMs: number, limits: RegistryLimits): void {
  if (!Number.isFinite(durationMs) || durationMs < 0 || durationMs > limits.maxTaskDurationMs) {
    throw new InvalidArgumentError("duration_ms", `must be a finite number between 0 and ${limits.maxTaskDurationMs}, got ${durationMs}`);
  }
}

/** @throws InvalidArgumentError naming the filter field at fault. */
export function validateFilter(filter: FilterInput, limits: RegistryLimits): void {
  if (filter.capabilities.length > limits.maxCapabilities) {
    throw new InvalidArgumentError("filter.capabilities", `must have at most ${limits.maxCapabilities} entries, got ${filter.capabilities.length}`);
  }
  validateCapabilities(filter.capabilities, limits, "filter.capabilities", false);
  // Every watcher matches every event against its filter: a long list would make each event cost that much.
  if (filter.healthStatuses.length > MAX_HEALTH_STATUSES) {
    throw new InvalidArgumentError(
      "filter.health_statuses",
      `must have at most ${MAX_HEALTH_STATUSES} entries (one per health status), got ${filter.healthStatuses.length}`,
    );
  }
  filter.healthStatuses.forEach((health, index) => {
    if (filter.healthStatuses.indexOf(health) < index) throw new InvalidArgumentError(`filter.health_statuses[${index}]`, `repeats ${health}`);
  });
  validateIntegerRange("filter.min_available_capacity", filter.minAvailableCapacity, 0, limits.maxConcurrentTasksLimit);
}

/**
 * Validates a filter and parses its label selector.
 * @throws InvalidArgumentError naming the filter field at fault (and, for a selector, the position).
 */
export function compileFilter(filter: FilterInput, limits: RegistryLimits): CompiledFilter {
  validateFilter(filter, limits);
  const versions = filter.versions ?? [];
  if (versions.length > MAX_FILTER_VERSIONS) {
    throw new InvalidArgumentError("filter.versions", `must have at most ${MAX_FILTER_VERSIONS} entries, got ${versions.length}`);
  }
  versions.forEach((version, index) => {
    validateVersion(version, `filter.versions[${index}]`);
    if (versions.indexOf(version) < index) throw new InvalidArgumentError(`filter.versions[${index}]`, `repeats ${quote(version)}`);
  });
  const text = filter.labelSelector ?? "";
  if (text.length > MAX_SELECTOR_LENGTH) {
    throw new InvalidArgumentError("filter.label_selector", `must be at most ${MAX_SELECTOR_LENGTH} characters, got ${text.length}`);
  }
  const selector = LabelSelector.parse(text);
  return { ...filter, selector, versions, narrowsLabels: !selector.isEmpty || versions.length > 0 };
}

/** Whether a worker's labels and version pass the filter. */
export function matchesLabels(filter: CompiledFilter, worker: { readonly labels: Labels; readonly version: string }): boolean {
  if (!filter.narrowsLabels) return true;
  if (filter.versions.length > 0 && !filter.versions.includes(worker.version)) return false;
  return filter.selector.matches(worker.labels);
}

/** @throws InvalidArgumentError unless 0 <= value <= max. */
export function validateIntegerRange(field: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new InvalidArgumentError(field, `must be between ${min} and ${max}, got ${value}`);
  }
}

function validateCapabilities(capabilities: readonly string[], limits: RegistryLimits, field = "capabilities", unique = true): void {
  const seen = new Set<string>();
  capabilities.forEach((capability, index) => {
    validateText(`${field}[${index}]`, capability, limits.maxCapabilityLength, WHITESPACE_OR_INVISIBLE, WHITESPACE_OR_INVISIBLE_NAME);
    if (unique && seen.has(capability)) throw new InvalidArgumentError(`${field}[${index}]`, `repeats ${quote(capability)}`);
    seen.add(capability);
  });
}

function validateText(field: string, value: string, maxLength: number, forbidden: RegExp, forbiddenName: string): void {
  if (value.length === 0) throw new InvalidArgumentError(field, "must not be empty");
  // Characters, as the message says: code points, not UTF-16 units. A string has no more code points than units,
  // so only a string longer in units than the limit needs counting.
  const length = value.length > maxLength ? characterCount(value) : value.length;
  if (length > maxLength) throw new InvalidArgumentError(field, `must be at most ${maxLength} characters, got ${length}`);
  const found = forbidden.exec(value);
  if (found) throw new InvalidArgumentError(field, `must not contain ${forbiddenName}, got ${codePointName(found[0])} in ${quote(value)}`);
}

function characterCount(value: string): number {
  let count = 0;
  for (const _ of value) count++;
  return count;
}

/** "U+202E". */
function codePointName(character: string): string {
  return `U+${character.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")}`;
}

/**
 * JSON quoting, with format characters and line separators escaped too, so
 * the message itself stays printable and cannot reorder or hide text where it
 * is shown; long values are cut.
 */
export function quote(value: string): string {
  const cut = value.length > 80 ? `${value.slice(0, 80)}…` : value;
  // JSON's own form: one \uXXXX per UTF-16 unit (two for a character beyond U+FFFF).
  const escape = (c: string) => Array.from({ length: c.length }, (_, i) => `\\u${c.charCodeAt(i).toString(16).padStart(4, "0")}`).join("");
  return JSON.stringify(cut).replace(INVISIBLE_GLOBAL, escape);
}

const RESERVATION_ID = /^rsv-\d{1,16}-[a-z0-9]{1,32}$/;

/** @throws InvalidArgumentError if the id is empty or not of the form rsv-<timestamp>-<random>. */
export function validateReservationId(reservationId: string): void {
  if (reservationId === "") throw new InvalidArgumentError("reservation_id", "is required");
  if (!RESERVATION_ID.test(reservationId)) {
    throw new InvalidArgumentError("reservation_id", `must look like rsv-<timestamp>-<random>, got ${quote(reservationId)}`);
  }
}
