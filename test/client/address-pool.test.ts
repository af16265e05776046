import { describe, expect, it } from "vitest";
import { AddressPool, compileAddresses, parseAddressList } from "../../clients/typescript/src/address-pool.js";
import { seededRandom } from "../support/registry-fixture.js";

const A = "10.0.0.1:50051";
const B = "10.0.0.2:50051";
const C = "10.0.0.3:50051";

const unused = () => {
  throw new Error("an as-given pool draws no random number");
};

describe("AddressPool: which address calls go to", () => {
  it("starts on the first address as given, and stays there while it works", () => {
    const pool = new AddressPool([A, B, C], "as-given", unused);
    expect(pool.current).toBe(A);
    expect(pool.addresses).toEqual([A, B, C]);
  });

  it("moves on to the next address when the current one fails, round the list", () => {
    const pool = new AddressPool([A, B, C], "as-given", unused);
    expect(pool.reportFailure(A)).toBe(B);
    expect(pool.current).toBe(B);
    expect(pool.reportFailure(B)).toBe(C);
    expect(pool.reportFailure(C)).toBe(A);
  });

  it("moves once when several calls in flight fail on the same address", () => {
    const pool = new AddressPool([A, B, C], "as-given", unused);
    expect(pool.reportFailure(A)).toBe(B);
    // The other calls that were on A report it too: calls stay on B.
    expect(pool.reportFailure(A)).toBeUndefined();
    expect(pool.reportFailure(A)).toBeUndefined();
    expect(pool.current).toBe(B);
  });

  it("does not leave a working address because another one failed", () => {
    const pool = new AddressPool([A, B, C], "as-given", unused);
    expect(pool.reportFailure(C)).toBeUndefined();
    expect(pool.current).toBe(A);
  });

  it("once every address has failed, goes to the one that failed longest ago", () => {
    const pool = new AddressPool([A, B, C], "as-given", unused);
    pool.reportFailure(A); // to B
    pool.reportFailure(B); // to C
    // A failed before B did: A is tried first, though B comes first after C.
    expect(pool.reportFailure(C)).toBe(A);
    // Then B (failed before C).
    expect(pool.reportFailure(A)).toBe(B);
  });

  it("prefers an address that never failed over the next one in order, which did", () => {
    const pool = new AddressPool([A, B, C], "as-given", unused);
    pool.reportFailure(B); // not current: noted, nothing moves
    expect(pool.reportFailure(A)).toBe(C);
  });

  it("keeps a single address whatever happens", () => {
    const pool = new AddressPool([A], "shuffled", Math.random);
    expect(pool.reportFailure(A)).toBeUndefined();
    expect(pool.current).toBe(A);
  });

  it("ignores an address it does not hold", () => {
    const pool = new AddressPool([A, B], "as-given", unused);
    expect(pool.reportFailure(C)).toBeUndefined();
    expect(pool.current).toBe(A);
  });

  it("draws its own order when shuffled", () => {
    // Fisher–Yates from the end: 0.99 keeps C last, 0 swaps B with A.
    const draws = [0.99, 0];
    const pool = new AddressPool([A, B, C], "shuffled", () => draws.shift()!);
    expect(pool.addresses).toEqual([B, A, C]);
    expect(pool.current).toBe(B);
  });

  it("refuses a random source outside [0, 1)", () => {
    expect(() => new AddressPool([A, B], "shuffled", () => 1)).toThrow(/\[0, 1\), got 1/);
  });

  it("spreads a fleet over the replicas, and spreads a dead replica's clients over the others", () => {
    const random = seededRandom(7);
    const pools = Array.from({ length: 3000 }, () => new AddressPool([A, B, C], "shuffled", random));
    const count = (address: string) => pools.filter((pool) => pool.current === address).length;
    for (const address of [A, B, C]) {
      expect(count(address)).toBeGreaterThan(900);
      expect(count(address)).toBeLessThan(1100);
    }
    const onA = pools.filter((pool) => pool.current === A);
    for (const pool of onA) pool.reportFailure(A);
    const toB = onA.filter((pool) => pool.current === B).length;
    // In one shared order they would all have gone to B.
    expect(toB / onA.length).toBeGreaterThan(0.4);
    expect(toB / onA.length).toBeLessThan(0.6);
    expect(onA.every((pool) => pool.current !== A)).toBe(true);
  });
});

describe("parseAddressList", () => {
  it("splits a comma-separated list and trims the blanks around entries", () => {
    expect(parseAddressList(` ${A},${B} , ${C},`)).toEqual([A, B, C]);
  });

  it("keeps a gRPC target that lists addresses itself whole", () => {
    expect(parseAddressList(`ipv4:10.0.0.1:50051,10.0.0.2:50051`)).toEqual([`ipv4:10.0.0.1:50051,10.0.0.2:50051`]);
    expect(parseAddressList(`ipv6:[::1]:50051,[::2]:50051`)).toEqual([`ipv6:[::1]:50051,[::2]:50051`]);
  });

  it("keeps one name or target as it is", () => {
    expect(parseAddressList("dns:///registry.internal:50051")).toEqual(["dns:///registry.internal:50051"]);
    expect(parseAddressList("localhost:50051")).toEqual(["localhost:50051"]);
  });

  it("gives nothing for blank text", () => {
    expect(parseAddressList(" , ")).toEqual([]);
    expect(parseAddressList("")).toEqual([]);
  });
});

describe("compileAddresses", () => {
  it("defaults to localhost:50051, and passes one address or target through as it is", () => {
    expect(compileAddresses({})).toEqual(["localhost:50051"]);
    expect(compileAddresses({ address: "dns:///registry.internal:50051" })).toEqual(["dns:///registry.internal:50051"]);
    expect(compileAddresses({ address: "ipv4:10.0.0.1:50051,10.0.0.2:50051" })).toEqual(["ipv4:10.0.0.1:50051,10.0.0.2:50051"]);
    expect(compileAddresses({ addresses: [A, B] })).toEqual([A, B]);
  });

  it("refuses what cannot be meant, naming the field and the rule", () => {
    expect(() => compileAddresses({ address: A, addresses: [B] })).toThrow("give either address (one registry) or addresses (several), not both");
    expect(() => compileAddresses({ addresses: [] })).toThrow("addresses must list at least one registry, got []");
    expect(() => compileAddresses({ addresses: [A, ""] })).toThrow('addresses[1] must be a non-empty host:port or gRPC target, got ""');
    expect(() => compileAddresses({ address: " " })).toThrow(/^address must be a non-empty/);
    expect(() => compileAddresses({ addresses: [A, B, A] })).toThrow(`addresses must not repeat an address, got "${A}" twice`);
    expect(() => compileAddresses({ address: `${A},${B}` })).toThrow(
      `address must name one registry, got the list "${A},${B}": use addresses: [...] for several registries`,
    );
    expect(() => compileAddresses({ addresses: [`${A},${B}`] })).toThrow(/^addresses\[0\] must name one registry, .*give one address per entry$/);
  });
});
