import { describe, expect, it } from "vitest";
import { TaskLedger } from "../../clients/typescript/src/task-ledger.js";

describe("TaskLedger", () => {
  it("is idle at once with no task", async () => {
    const ledger = new TaskLedger();
    await ledger.whenIdle();
    expect(ledger.active).toBe(0);
  });

  it("counts a task as active until it ends, and as running only while its work runs", async () => {
    const ledger = new TaskLedger();
    const ticket = ledger.begin();
    expect([ledger.active, ledger.running]).toEqual([1, 0]);
    ticket.started();
    expect([ledger.active, ledger.running]).toEqual([1, 1]);
    ticket.worked();
    ticket.worked();
    expect([ledger.active, ledger.running]).toEqual([1, 0]);
    let idle = false;
    const waiting = ledger.whenIdle().then(() => (idle = true));
    await Promise.resolve();
    expect(idle).toBe(false);
    ticket.end();
    ticket.end();
    await waiting;
    expect([ledger.active, ledger.running]).toEqual([0, 0]);
  });

  it("wakes the waiters only when the last of several tasks ends", async () => {
    const ledger = new TaskLedger();
    const first = ledger.begin();
    const second = ledger.begin();
    first.started();
    let idle = false;
    const waiting = ledger.whenIdle().then(() => (idle = true));
    first.end();
    await Promise.resolve();
    expect(idle).toBe(false);
    expect(ledger.running).toBe(0);
    second.end();
    await waiting;
    expect(idle).toBe(true);
  });
});
