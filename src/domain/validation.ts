import { InvalidArgumentError } from "./errors.js";
import type { HealthStatus } from "./health.js";
import type { RegistryLimits } from "./registry-options.js";

// C0 and C1 control characters and DEL: invisible in logs and dashboards, and a classic injection vector.
const CONTROL = /\p{Cc}/u;
const WHITESPACE_OR_CONTROL = /[\s\p{Cc}]/u;
const WORKER_ID = /^worker-\d{1,16}-[a-z0-9]{1,32}$/;

/** A registration as the caller sends it. */
export interface RegistrationInput {
  readonly nodeId: string;
  readonly capabilities: readonly string[];
  readonly maxConcurrentTasks: number;
}

/** A worker filter as the caller sends it. Empty or zero fields do not filter. */
export interface FilterInput {
  readonly capabilities: readonly string[];
  readonly healthStatuses: readonly HealthStatus[];
  readonly minAvailableCapacity: number;
}

/** @throws InvalidArgumentError naming the first field that breaks a rule. */
export function validateRegistration(input: RegistrationInput, limits: RegistryLimits): void {
  validateText("node_id", input.nodeId, limits.maxNodeIdLength, CONTROL, "control characters");
  const { capabilities } = input;
  if (capabilities.length === 0) throw new InvalidArgumentError("capabilities", "must name at least one capability");
  if (capabilities.length > limits.maxCapabilities) {
    throw new InvalidArgumentError("capabilities", `must have at most ${limits.maxCapabilities} entries, got ${capabilities.length}`);
  }
  validateCapabilities(capabilities, limits);
  validateIntegerRange("max_concurrent_tasks", input.maxConcurrentTasks, 1, limits.maxConcurrentTasksLimit);
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
  validateIntegerRange("filter.min_available_capacity", filter.minAvailableCapacity, 0, limits.maxConcurrentTasksLimit);
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
    validateText(`${field}[${index}]`, capability, limits.maxCapabilityLength, WHITESPACE_OR_CONTROL, "white space or control characters");
    if (unique && seen.has(capability)) throw new InvalidArgumentError(`${field}[${index}]`, `repeats ${quote(capability)}`);
    seen.add(capability);
  });
}

function validateText(field: string, value: string, maxLength: number, forbidden: RegExp, forbiddenName: string): void {
  if (value.length === 0) throw new InvalidArgumentError(field, "must not be empty");
  if (value.length > maxLength) throw new InvalidArgumentError(field, `must be at most ${maxLength} characters, got ${value.length}`);
  if (forbidden.test(value)) throw new InvalidArgumentError(field, `must not contain ${forbiddenName}, got ${quote(value)}`);
}

/** JSON quoting shows control characters as escapes, so the message itself stays printable; long values are cut. */
export function quote(value: string): string {
  return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
}

const RESERVATION_ID = /^rsv-\d{1,16}-[a-z0-9]{1,32}$/;

/** @throws InvalidArgumentError if the id is empty or not of the form rsv-<timestamp>-<random>. */
export function validateReservationId(reservationId: string): void {
  if (reservationId === "") throw new InvalidArgumentError("reservation_id", "is required");
  if (!RESERVATION_ID.test(reservationId)) {
    throw new InvalidArgumentError("reservation_id", `must look like rsv-<timestamp>-<random>, got ${quote(reservationId)}`);
  }
}
