import type { RandomSource } from "./backoff.js";

/**
 * In which order a client uses the registry addresses it was given:
 * `'shuffled'` (each client draws its own order, so a fleet spreads over the
 * replicas, and the clients of a replica that dies spread over the others
 * instead of all moving to the next one) or `'as-given'` (the first address
 * while it works, e.g. the nearest replica first).
 */
export type AddressOrder = "shuffled" | "as-given";

/**
 * The addresses of one registry's replicas, and which of them calls go to.
 *
 * Calls stick to one address (the current one) for as long as it works: a
 * client's reads come from one replica's view, not alternately from replicas
 * a moment apart, and a replica that comes back after a failure gets its
 * clients back one failover at a time rather than in one wave. When the current address fails, the
 * next calls go to the address that has gone longest without failing (one
 * that never failed first, in this pool's order after the failed one); the
 * failed one is chosen again only when every other address failed after it.
 * With one address there is nothing to choose: it stays current.
 *
 * Knows nothing of gRPC: the caller decides what counts as a failure.
 */
export class AddressPool {
  /** Every address, in the order this pool goes round them. */
  readonly addresses: readonly string[];
  private currentIndex = 0;
  /** When each address last failed, as a count of failures reported to this pool; 0 for never. */
  private readonly lastFailure: number[];
  private failureCount = 0;

  /**
   * @param addresses - At least one; checked by the caller (see `compileAddresses`).
   * @param random - Uniform source in [0, 1) for the `'shuffled'` order.
   * @throws RangeError for an empty list, or a random source outside [0, 1).
   */
  constructor(addresses: readonly string[], order: AddressOrder, random: RandomSource) {
    if (addresses.length === 0) {
      throw new RangeError("an address pool needs at least one address");
    }
    this.addresses = order === "shuffled" ? shuffled(addresses, random) : [...addresses];
    this.lastFailure = this.addresses.map(() => 0);
  }

  /** The address calls go to now. */
  get current(): string {
    return this.addresses[this.currentIndex]!;
  }

  /**
   * Records that a call to `address` failed in a way that another replica
   * might not (the connection, not the request). If `address` is the current
   * one, later calls move to another address; if calls had already moved on
   * (several calls in flight failed together), nothing moves again.
   *
   * @returns the new current address if it changed, else undefined. An
   *   address this pool does not hold is ignored.
   */
  reportFailure(address: string): string | undefined {
    const failed = this.addresses.indexOf(address);
    if (failed < 0) {
      return undefined;
    }
    this.failureCount += 1;
    this.lastFailure[failed] = this.failureCount;
    if (failed !== this.currentIndex || this.addresses.length === 1) {
      return undefined;
    }
    let best = -1;
    for (let step = 1; step < this.addresses.length; step += 1) {
      const candidate = (failed + step) % this.addresses.length;
      if (best < 0 || this.lastFailure[candidate]! < this.lastFailure[best]!) {
        best = candidate;
      }
    }
    this.currentIndex = best;
    return this.current;
  }
}

/**
 * Splits a list of registry addresses as people write it in one setting
 * (`REGISTRY_ADDRESS`, a repeated command-line flag): `host:port` entries
 * separated by commas, blanks around them ignored. A gRPC target that itself
 * lists several addresses (`ipv4:10.0.0.1:50051,10.0.0.2:50051`, or
 * `ipv6:…`) is kept whole: grpc-js fails over among them on one channel.
 *
 * @example parseAddressList("10.0.0.1:50051, 10.0.0.2:50051") // ['10.0.0.1:50051', '10.0.0.2:50051']
 * @example parseAddressList("dns:///registry.internal:50051") // ['dns:///registry.internal:50051']
 * @returns the addresses, possibly none (for an empty or all-blank text).
 */
export function parseAddressList(text: string): string[] {
  const trimmed = text.trim();
  if (namesSeveral(trimmed)) {
    return [trimmed];
  }
  return trimmed
    .split(",")
    .map((entry) => entry.trim())
    .filter((entry) => entry !== "");
}

/**
 * Checks the addresses of the client options once and returns them as a
 * list: `address` (one target, passed to grpc-js as it is) or `addresses`
 * (several, between which the client fails over), never both. Default
 * `['localhost:50051']`.
 *
 * @throws RangeError naming the field and the rule: both given, an empty
 *   list or entry, a duplicate, or a comma-separated list in one entry
 *   (other than an `ipv4:`/`ipv6:` target, which lists addresses by design).
 */
export function compileAddresses(options: { address?: string; addresses?: readonly string[] }): string[] {
  const { address, addresses } = options;
  if (address !== undefined && addresses !== undefined) {
    throw new RangeError("give either address (one registry) or addresses (several), not both");
  }
  if (addresses === undefined) {
    const target = address ?? "localhost:50051";
    checkTarget("address", target, "use addresses: [...] for several registries");
    return [target];
  }
  if (addresses.length === 0) {
    throw new RangeError("addresses must list at least one registry, got []");
  }
  addresses.forEach((entry, index) => checkTarget(`addresses[${index}]`, entry, "give one address per entry"));
  const duplicate = addresses.find((entry, index) => addresses.indexOf(entry) !== index);
  if (duplicate !== undefined) {
    throw new RangeError(`addresses must not repeat an address, got ${JSON.stringify(duplicate)} twice`);
  }
  return [...addresses];
}

function checkTarget(field: string, target: string, advice: string): void {
  if (typeof target !== "string" || target.trim() === "") {
    throw new RangeError(`${field} must be a non-empty host:port or gRPC target, got ${JSON.stringify(target)}`);
  }
  if (target.includes(",") && !namesSeveral(target)) {
    throw new RangeError(`${field} must name one registry, got the list ${JSON.stringify(target)}: ${advice}`);
  }
}

/** An `ipv4:`/`ipv6:` target, whose commas separate addresses that grpc-js resolves itself. */
function namesSeveral(target: string): boolean {
  return /^ipv[46]:/i.test(target);
}

/** A copy of `items` in an order drawn with `random` (Fisher–Yates). */
function shuffled<T>(items: readonly T[], random: RandomSource): T[] {
  const result = [...items];
  for (let i = result.length - 1; i > 0; i -= 1) {
    const draw = random();
    if (!(draw >= 0 && draw < 1)) {
      throw new RangeError(`random source must return a number in [0, 1), got ${draw}`);
    }
    const j = Math.floor(draw * (i + 1));
    [result[i], result[j]] = [result[j]!, result[i]!];
  }
  return result;
}
