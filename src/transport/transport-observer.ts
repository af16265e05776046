/**
 * What the transport reports as it serves, for metrics: kept free of any
 * metrics library, so the transport can be observed by anything, or by a
 * test. Every method is called on the serving path: it must be cheap and must
 * not throw.
 */
export interface TransportObserver {
  /**
   * A unary call was answered.
   * @param method the RPC's name as in the proto, e.g. "RegisterWorker".
   * @param code the gRPC status name, e.g. "OK", "NOT_FOUND".
   * @param seconds from the call's arrival to its answer.
   */
  unaryAnswered(method: string, code: string, seconds: number): void;
  /**
   * A call was answered with an error status instead of being served: a
   * unary call that failed, a stream refused when it opened or ended by the
   * registry with an error (not by a shutdown), a health or reflection call
   * refused. `method` is one of a fixed set of names (see {@link methodLabel}).
   */
  callRefused(method: string, code: string): void;
  /** One HeartbeatStream message was handled: seconds from its arrival to its reply being written. */
  heartbeatHandled(seconds: number): void;
  /** A live event was written to a WatchWorkers stream, `lagSeconds` after it occurred. */
  watchEventDelivered(lagSeconds: number): void;
  /** A live watcher was ended for falling `--watch-buffer` events behind. */
  watcherDropped(): void;
}

/** An observer that records nothing: the transport without metrics. */
export const NO_TRANSPORT_OBSERVER: TransportObserver = {
  unaryAnswered: () => {},
  callRefused: () => {},
  heartbeatHandled: () => {},
  watchEventDelivered: () => {},
  watcherDropped: () => {},
};

/**
 * The label for a call's full path: the method's name for the registry's own
 * service ("RegisterWorker"), `service/method` for the services it hosts
 * ("grpc.health.v1.Health/Check"), and "other" for any path not in `known`:
 * a caller can send any path, and a label must never take values without bound.
 */
export function methodLabel(path: string, registryService: string, known: ReadonlySet<string>): string {
  if (!known.has(path)) return "other";
  const name = path.slice(1);
  return name.startsWith(`${registryService}/`) ? name.slice(registryService.length + 1) : name;
}
