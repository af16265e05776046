import { StoreUnavailableError } from "./errors.js";
import type { RegistryStore } from "./registry-store.js";

/** The store's operations that write: their outcome says whether the store takes writes. */
const WRITES = new Set<keyof RegistryStore>([
  "registerWorker",
  "unregisterWorker",
  "adjustTaskCount",
  "recordCompletion",
  "acquireSlot",
  "releaseReservation",
  "changeHealth",
  "removeExpired",
  "expireReservations",
  "writeHeartbeats",
  "prune",
  "lead",
  "resign",
]);

/** Whether a store takes writes now, as its last write answered. */
export interface StoreAvailability {
  readonly writable: boolean;
  /** Calls `listener` on every change, and returns the function that stops it. */
  subscribe(listener: (writable: boolean) => void): () => void;
}

/**
 * Wraps a store so that the outcome of every write says whether it takes
 * writes: unwritable from the first write that fails for the storage
 * (StoreUnavailableError), writable again from the first that succeeds. The
 * heartbeat flush writes every second, even with nothing to write, so the
 * state follows the store within a second either way.
 */
export function watchAvailability(store: RegistryStore): { readonly store: RegistryStore; readonly availability: StoreAvailability } {
  let writable = true;
  const listeners = new Set<(writable: boolean) => void>();
  const set = (now: boolean) => {
    if (now === writable) return;
    writable = now;
    for (const listener of listeners) listener(now);
  };
  const watched = new Proxy(store, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver) as unknown;
      if (typeof value !== "function" || !WRITES.has(property as keyof RegistryStore)) return typeof value === "function" ? value.bind(target) : value;
      return (...args: unknown[]) =>
        (value as (...a: unknown[]) => Promise<unknown>).apply(target, args).then(
          (result) => {
            set(true);
            return result;
          },
          (error: unknown) => {
            if (error instanceof StoreUnavailableError) set(false);
            throw error;
          },
        );
    },
  });
  return {
    store: watched,
    availability: {
      get writable() {
        return writable;
      },
      subscribe(listener) {
        listeners.add(listener);
        return () => listeners.delete(listener);
      },
    },
  };
}
