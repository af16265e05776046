import { accessSync, constants, mkdirSync } from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { ConfigError } from "../domain/errors.js";

/** Who holds a database: what a refused server tells its operator. */
export interface LockHolder {
  readonly pid: number;
  readonly host: string;
  /** Wall-clock ms at which the holder took the lock. */
  readonly sinceMs: number;
}

/** Another live process holds the database: a second server on it would keep a fleet of its own in memory. */
export class DatabaseInUseError extends ConfigError {
  constructor(
    readonly dbPath: string,
    readonly lockFile: string,
    readonly holder: LockHolder | undefined,
  ) {
    const who =
      holder === undefined
        ? "a process that has not said who it is"
        : `pid ${holder.pid} on ${holder.host}, serving since ${new Date(holder.sinceMs).toISOString()}`;
    super(
      `database ${dbPath} is in use by another worker-registry: ${who} (lock file ${lockFile}). ` +
        `Two servers on one database would each keep their own fleet in memory: stop that server first, or give this one another --db`,
    );
  }
}

/** Options of {@link lockDatabase}. Every field is optional. */
export interface LockOptions {
  /** How long to wait for other processes that are taking the lock at the same moment. Default 5000 ms. */
  readonly waitMs?: number;
}

/** The exclusive hold of a database by this process. */
export interface DatabaseLock {
  /** The lock file, beside the database: `<db>.lock`. */
  readonly file: string;
  /**
   * Whether this process holds the lock. False only while the lock files
   * cannot be written (a read-only file system, where nobody can write the
   * database either).
   */
  readonly held: boolean;
  /**
   * Takes the lock if it is not held yet: for a store whose file system became
   * writable again. Returns {@link held}.
   * @throws DatabaseInUseError if another process took it meanwhile.
   */
  retake(): boolean;
  /** Lets the lock go. Safe to call more than once. */
  release(): void;
}

/**
 * Takes the exclusive lock of the database at `dbPath`, for the life of this
 * process or until {@link DatabaseLock.release}. Creates the database's
 * directory if need be.
 *
 * Two small SQLite files beside the database, in rollback-journal mode, so
 * that the database itself stays open to any other connection, in this
 * process or another (a backup, a second writer on purpose):
 *
 * - `<db>.lock`: the holder keeps a write transaction open on it for as long
 *   as it holds the lock (`BEGIN IMMEDIATE`). That is a POSIX advisory lock,
 *   which the operating system drops when the process dies, kill -9 included.
 * - `<db>.lock-holder`: who holds it (pid, host, since when). A claim runs
 *   inside a write transaction on this file, so claims pass one at a time: the
 *   holder writes its row before it lets the next claim in, and a claim that
 *   finds `<db>.lock` taken reads the row of the process that really holds it.
 *
 * Never open these files by other means in this process (fs.open,
 * fs.readFile): closing any descriptor of a file drops the process's POSIX
 * locks on it. Never delete them while a server may run: a new file would be
 * a second lock.
 *
 * @throws DatabaseInUseError if another live process holds it (this process
 *   too: a second server in one process is refused the same way); SQLite
 *   errors if the files cannot be opened for another reason; the error of
 *   `fs.mkdirSync` if the directory cannot be created.
 */
export function lockDatabase(dbPath: string, holder: LockHolder, options: LockOptions = {}): DatabaseLock {
  return new SqliteDatabaseLock(dbPath, holder, options.waitMs ?? 5000);
}

class SqliteDatabaseLock implements DatabaseLock {
  readonly file: string;
  private readonly holderFile: string;
  /** The connection whose open transaction is the lock, while held. */
  private hold: Database.Database | undefined;
  private released = false;

  constructor(
    private readonly dbPath: string,
    private readonly holder: LockHolder,
    private readonly waitMs: number,
  ) {
    this.file = `${path.resolve(dbPath)}.lock`;
    this.holderFile = `${this.file}-holder`;
    mkdirSync(path.dirname(this.file), { recursive: true });
    this.claim();
  }

  get held(): boolean {
    return this.hold !== undefined;
  }

  retake(): boolean {
    if (this.hold === undefined && !this.released) this.claim();
    return this.held;
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    const hold = this.hold;
    this.hold = undefined;
    if (hold === undefined) return;
    try {
      if (hold.inTransaction) hold.exec("ROLLBACK");
    } finally {
      hold.close();
    }
  }

  /** One claim: holds the lock afterwards, or throws naming the holder, or leaves it unheld if the files cannot be written. */
  private claim(): void {
    const who = open(this.holderFile, this.waitMs);
    if (who === undefined) return;
    let hold: Database.Database | undefined;
    try {
      // Claims queue here, each for a few milliseconds; SQLite waits up to waitMs for the one before.
      if (!begin(who)) throw new DatabaseInUseError(this.dbPath, this.file, undefined);
      who.exec(`CREATE TABLE IF NOT EXISTS holder (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        pid INTEGER NOT NULL, host TEXT NOT NULL, since_ms INTEGER NOT NULL)`);
      hold = open(this.file, 0);
      if (hold === undefined) return;
      if (!begin(hold)) {
        const row = who.prepare<[], LockHolder>("SELECT pid, host, since_ms AS sinceMs FROM holder WHERE id = 1").get();
        throw new DatabaseInUseError(this.dbPath, this.file, row);
      }
      who
        .prepare<LockHolder>(`INSERT INTO holder (id, pid, host, since_ms) VALUES (1, @pid, @host, @sinceMs)
          ON CONFLICT (id) DO UPDATE SET pid = excluded.pid, host = excluded.host, since_ms = excluded.since_ms`)
        .run(this.holder);
      who.exec("COMMIT");
      this.hold = hold;
      hold = undefined;
    } catch (error) {
      // SQLite opened a file read-only (a read-only file system): nobody can write the database either.
      if (!(error instanceof Database.SqliteError && error.code.startsWith("SQLITE_READONLY"))) throw error;
    } finally {
      if (hold !== undefined) {
        if (hold.inTransaction) hold.exec("ROLLBACK");
        hold.close();
      }
      if (who.inTransaction) who.exec("ROLLBACK");
      who.close();
    }
  }
}

/**
 * Opens a lock file, creating it, with SQLite waiting up to `waitMs` for
 * another connection's lock; undefined if it does not exist and cannot be
 * created because its directory is read-only (and so is the database, whose
 * journal lives there).
 */
function open(file: string, waitMs: number): Database.Database | undefined {
  try {
    const db = new Database(file, { timeout: waitMs });
    // The holder's row is a name tag only: a power loss may lose it, and the lock itself is not on disk.
    db.pragma("synchronous = OFF");
    return db;
  } catch (error) {
    if (error instanceof Database.SqliteError && error.code.startsWith("SQLITE_CANTOPEN") && !writable(path.dirname(file))) return undefined;
    throw error;
  }
}

/** BEGIN IMMEDIATE; false if another connection holds the write lock. */
function begin(db: Database.Database): boolean {
  try {
    db.exec("BEGIN IMMEDIATE");
    return true;
  } catch (error) {
    if (error instanceof Database.SqliteError && error.code.startsWith("SQLITE_BUSY")) return false;
    throw error;
  }
}

function writable(directory: string): boolean {
  try {
    accessSync(directory, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}
