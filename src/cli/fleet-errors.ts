import { RegistryClientError } from "@sentinel/worker-registry-client";
import { rolesAllowedTo, type Operation } from "../security/access-policy.js";
import type { Output } from "./fleet-args.js";

/** What a command asks of the registry, for messages that name the token it needs. */
export interface CommandAccess {
  /** The operation the access policy checks. */
  readonly operation: Operation;
  /** The operation in words, as the subject of "needs": "reading the fleet". */
  readonly doing: string;
}

/** Where the command asked: every address given, and the one that answered (or was tried last). */
export interface AskedRegistry {
  readonly addresses: readonly string[];
  readonly address: string;
}

/**
 * Writes why a command failed, as an operator would put it, and returns the
 * exit code 1:
 * - an unreachable registry names the addresses and why: nothing listens
 *   there, the name does not resolve, no answer in time;
 * - a missing token points to REGISTRY_TOKEN and the role it needs, a refused
 *   token or role says which role the command needs, in words ("reading the
 *   fleet needs an orchestrator or admin token");
 * - any other refusal is the registry's own message (it names the field, the
 *   worker, the rule).
 * Never prints a token.
 */
export function reportFailure(error: unknown, asked: AskedRegistry, access: CommandAccess, out: Output): number {
  out.stderr(`worker-registry: ${describeFailure(error, asked, access)}`);
  return 1;
}

/** The message of {@link reportFailure}, without its prefix. */
export function describeFailure(error: unknown, asked: AskedRegistry, access: CommandAccess): string {
  if (!(error instanceof RegistryClientError)) return error instanceof Error ? error.message : String(error);
  const needs = `${access.doing} needs ${tokenOf(access.operation)}`;
  switch (error.codeName) {
    case "UNAVAILABLE":
    case "DEADLINE_EXCEEDED": {
      const reason = unreachable(error);
      if (reason !== undefined) return `cannot reach the registry at ${asked.addresses.join(", ")}: ${reason}`;
      return `the registry at ${asked.address} is unavailable: ${error.message}`;
    }
    case "UNAUTHENTICATED":
      if (/missing authorization/.test(error.details)) {
        return `the registry at ${asked.address} needs a token, and REGISTRY_TOKEN is not set: ${needs}`;
      }
      return `the registry at ${asked.address} refused the token in REGISTRY_TOKEN (${error.message}): ${needs}`;
    case "PERMISSION_DENIED":
      return `${needs}, and the token in REGISTRY_TOKEN is not one (the registry said: ${error.message})`;
    default:
      return error.message;
  }
}

/** Why a call never reached a registry, in words, or undefined if a registry answered. */
function unreachable(error: RegistryClientError): string | undefined {
  const details = error.details;
  if (/ECONNREFUSED/.test(details)) return "nothing listens there (connection refused): is the registry running, on that host and port?";
  if (/Name resolution failed|ENOTFOUND|EAI_AGAIN/.test(details)) return "the host name does not resolve";
  if (error.codeName === "DEADLINE_EXCEEDED") return "no answer in time: the address may be firewalled, or the registry overloaded";
  if (/No connection established|Connection dropped|ECONNRESET|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT|handshake|SSL|TLS/i.test(details)) {
    return `${details.replace(/\. Resolution note: *$/, "")} (if the registry serves TLS, pass --tls-ca)`;
  }
  return undefined;
}

/** "an orchestrator or admin token", "an admin token": the roles allowed, in words. */
export function tokenOf(operation: Operation): string {
  const roles = rolesAllowedTo(operation);
  const words = roles.length <= 1 ? roles.join("") : `${roles.slice(0, -1).join(", ")} or ${roles.at(-1)}`;
  return `${/^[aeiou]/.test(words) ? "an" : "a"} ${words} token`;
}
