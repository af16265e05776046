/** One task in a {@link TaskLedger}, from before its count is raised to after its bookkeeping. */
export interface TaskTicket {
  /** The task's own work has begun. */
  started(): void;
  /** The task's own work is over (its bookkeeping may follow). Idempotent. */
  worked(): void;
  /** The task is over, bookkeeping included. Idempotent. */
  end(): void;
}

/**
 * The tasks a WorkerNode is running, so that a drain can wait for them:
 * `active` counts every task from before its count is raised to the end of
 * its bookkeeping, `running` only those whose own work is under way.
 */
export class TaskLedger {
  private activeCount = 0;
  private runningCount = 0;
  private idleWaiters: (() => void)[] = [];

  /** Tasks between the start of `runTask` and the end of their bookkeeping. */
  get active(): number {
    return this.activeCount;
  }

  /** Tasks whose own work is under way. */
  get running(): number {
    return this.runningCount;
  }

  /** Counts a task in until its ticket ends. */
  begin(): TaskTicket {
    this.activeCount += 1;
    let phase: "counted" | "running" | "worked" | "ended" = "counted";
    const worked = (): void => {
      if (phase === "running") this.runningCount -= 1;
      if (phase === "counted" || phase === "running") phase = "worked";
    };
    return {
      started: () => {
        if (phase !== "counted") return;
        phase = "running";
        this.runningCount += 1;
      },
      worked,
      end: () => {
        if (phase === "ended") return;
        worked();
        phase = "ended";
        this.activeCount -= 1;
        if (this.activeCount === 0) {
          const waiters = this.idleWaiters;
          this.idleWaiters = [];
          for (const wake of waiters) wake();
        }
      },
    };
  }

  /** Resolves once no task is active (at once if none is). */
  whenIdle(): Promise<void> {
    if (this.activeCount === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }
}
