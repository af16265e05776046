import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { ConfigError } from "../domain/errors.js";
import { WORKER_ACTIONS, type WorkerAction } from "../dashboard/dashboard-actions.js";
import { authorize, mayEver, type Operation } from "./access-policy.js";
import type { Authenticator } from "./authenticator.js";
import type { Principal } from "./roles.js";
import { loadTokenFile, type RoleToken } from "./token-file.js";

/** How the server is secured. Every field is optional; the defaults suit local development on loopback. */
export interface SecurityOptions {
  /** PEM certificate chain file: serve TLS (with `tlsKeyFile`). */
  tlsCertFile?: string;
  /** PEM private key file of the certificate. */
  tlsKeyFile?: string;
  /** PEM CA file: require client certificates signed by it (mutual TLS). Needs TLS. */
  tlsClientCaFile?: string;
  /** Tokens file (`ROLE TOKEN` per line): turns authentication on. Reloaded on SIGHUP. */
  tokensFile?: string;
  /** Allow plaintext without tokens on a non-loopback address. Default false: refused, since anyone who can reach it could steal tasks or evict the fleet. */
  insecure?: boolean;
  /** Require a token for grpc.health.v1. Default false: probes and load balancers rarely carry tokens, and health tells nothing secret. */
  authenticateHealth?: boolean;
  /** Require a token for server reflection. Default false: it shows only the public contract, and operators debug with it. */
  authenticateReflection?: boolean;
}

/** The PEM files' contents, read once at start-up. */
export interface TlsMaterial {
  readonly cert: Buffer;
  readonly key: Buffer;
  /** With it, clients must present a certificate it signed (mutual TLS). */
  readonly clientCa?: Buffer;
}

/** What a server's security settings come to: TLS material and role tokens, read and checked. */
export interface ServerSecurity {
  readonly tls: TlsMaterial | undefined;
  readonly roleTokens: RoleToken[] | undefined;
}

/**
 * Reads the TLS files and the tokens file, and refuses an exposure that
 * would let anyone who can reach the server register workers, steal tasks or
 * evict the fleet: plaintext without tokens off loopback, or the dashboard's
 * fleet feed off loopback without tokens, unless `insecure` accepts the risk.
 * @throws ConfigError naming the flag to change.
 */
export function loadServerSecurity(
  security: SecurityOptions,
  exposure: { readonly host: string; readonly metricsHost: string; readonly metricsPort: number | undefined },
): ServerSecurity {
  const tls = readTls(security);
  const roleTokens = security.tokensFile === undefined ? undefined : loadTokenFile(security.tokensFile);
  if (!isLoopback(exposure.host) && tls === undefined && roleTokens === undefined && !security.insecure) {
    throw new ConfigError(
      `refusing to serve ${exposure.host} in plaintext without tokens: anyone who can reach it could register workers, steal tasks ` +
        `or evict the fleet. Configure --tls-cert/--tls-key and/or --tokens-file, or pass --insecure to accept the risk`,
    );
  }
  if (exposure.metricsPort !== undefined && !isLoopback(exposure.metricsHost) && roleTokens === undefined && !security.insecure) {
    throw new ConfigError(
      `refusing to serve the dashboard's fleet feed on ${exposure.metricsHost} without tokens: it shows every worker to anyone ` +
        `who can reach it. Configure --tokens-file, bind the metrics port to loopback, or pass --insecure`,
    );
  }
  return { tls, roleTokens };
}

/**
 * Who may read the dashboard's fleet feed: with tokens on, a token that may
 * read the fleet, sent as an `authorization` header, as DiscoverWorkers asks.
 */
export function dashboardAuthorizer(authenticator: Authenticator): (authorization: string | undefined) => boolean {
  return (authorization) => {
    try {
      authorize(authenticator.authenticate(authorization === undefined ? [] : [authorization]), "read-fleet");
      return true;
    } catch {
      return false;
    }
  };
}

/** The operation of the access policy each dashboard action is: the one its RPC is authorised as. */
const OPERATION_OF_ACTION: Readonly<Record<WorkerAction, Operation>> = {
  cordon: "cordon",
  uncordon: "cordon",
  drain: "drain",
};

/**
 * Who may cordon, uncordon and drain workers from the dashboard: exactly who
 * may call CordonWorker, UncordonWorker and DrainWorker, with the token
 * sent as an `authorization` header. A token that may read the feed is not
 * enough (a worker-role token may read nothing, an orchestrator token may
 * act): the access policy decides each action on each worker.
 * @param registrantOf the hash of the role token that registered a worker (as the RPCs are checked).
 */
export function dashboardActionGuard(
  authenticator: Authenticator,
  registrantOf: (workerId: string) => string | null | undefined,
): {
  allowed(authorization: string | undefined): WorkerAction[];
  authorize(authorization: string | undefined, action: WorkerAction, workerId: string): string;
} {
  const principalOf = (authorization: string | undefined) => authenticator.authenticate(authorization === undefined ? [] : [authorization]);
  return {
    allowed(authorization) {
      const principal = principalOf(authorization);
      return WORKER_ACTIONS.filter((action) => {
        try {
          mayEver(principal, OPERATION_OF_ACTION[action]);
          return true;
        } catch {
          return false;
        }
      });
    },
    authorize(authorization, action, workerId) {
      const principal = principalOf(authorization);
      authorize(principal, OPERATION_OF_ACTION[action], { workerId, registeredBy: registrantOf(workerId) });
      return describePrincipal(principal);
    },
  };
}

/** Who is calling, for a log line: never the token. */
function describePrincipal(principal: Principal): string {
  switch (principal.kind) {
    case "open":
      return "anyone (authentication off)";
    case "role":
      return `${principal.role} token`;
    case "worker":
      return `token of worker ${principal.workerId}`;
  }
}

/** Whether an address to bind reaches this machine only. */
export function isLoopback(host: string): boolean {
  const bare = host.replace(/^\[(.*)\]$/, "$1");
  if (bare === "localhost") return true;
  if (isIP(bare) === 4) return bare.startsWith("127.");
  return bare === "::1";
}

function readTls(security: SecurityOptions): TlsMaterial | undefined {
  const { tlsCertFile, tlsKeyFile, tlsClientCaFile } = security;
  if (tlsCertFile === undefined && tlsKeyFile === undefined) {
    if (tlsClientCaFile !== undefined) throw new ConfigError("--tls-client-ca needs TLS: give --tls-cert and --tls-key too");
    return undefined;
  }
  if (tlsCertFile === undefined || tlsKeyFile === undefined) throw new ConfigError("TLS needs both --tls-cert and --tls-key");
  const read = (flag: string, path: string) => {
    try {
      return readFileSync(path);
    } catch (error) {
      throw new ConfigError(`${flag}: cannot read ${path}: ${(error as Error).message}`);
    }
  };
  return {
    cert: read("--tls-cert", tlsCertFile),
    key: read("--tls-key", tlsKeyFile),
    ...(tlsClientCaFile === undefined ? {} : { clientCa: read("--tls-client-ca", tlsClientCaFile) }),
  };
}
