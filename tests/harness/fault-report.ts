import { appendFileSync, mkdirSync } from "node:fs";
import { resolve } from "node:path";

/**
 * Recovery times observed by the fault suite: printed with the test output
 * (one `fault-recovery` line per fault) and appended to
 * tests/.artifacts/fault-recovery.jsonl, so a run leaves the figures behind.
 */
const file = resolve(import.meta.dir, "..", ".artifacts", "fault-recovery.jsonl");

export function recordRecovery(fault: string, figuresMs: Record<string, number>): void {
  const line = { at: new Date().toISOString(), fault, figuresMs };
  console.log(`fault-recovery ${JSON.stringify(line)}`);
  mkdirSync(resolve(file, ".."), { recursive: true });
  appendFileSync(file, `${JSON.stringify(line)}\n`);
}
