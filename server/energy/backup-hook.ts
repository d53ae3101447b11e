import { createHmac } from "node:crypto";
import type { Config } from "../config";
import { isWorse, type PowerLevel } from "./levels";

export type BackupSignal = "switch-to-backup" | "switch-to-solar";

/**
 * Whether a level change crosses the backup level (BACKUP_HOOK_LEVEL): entering
 * it or anything worse asks for backup power; leaving it for something better
 * hands the load back to solar. Changes on one side of the line signal nothing.
 */
export function backupSignalFor(from: PowerLevel, to: PowerLevel, backupLevel: PowerLevel): BackupSignal | null {
  const wasOnBackup = !isWorse(backupLevel, from);
  const isOnBackup = !isWorse(backupLevel, to);
  if (isOnBackup && !wasOnBackup) return "switch-to-backup";
  if (wasOnBackup && !isOnBackup) return "switch-to-solar";
  return null;
}

export type BackupHookCall = { signal: BackupSignal; changeId: string; from: PowerLevel; to: PowerLevel; at: string; soc: number | null };

export class BackupHookError extends Error {
  override name = "BackupHookError";
}

/**
 * POSTs the signal as JSON to BACKUP_HOOK_URL. With BACKUP_HOOK_SECRET set the
 * body is signed: `X-Sahary-Signature: sha256=<hex HMAC of the body>`. The
 * change id doubles as an idempotency key (`Idempotency-Key` header) because a
 * retried job calls the hook again. Resolves with the HTTP status, or null when
 * no hook is configured; rejects on timeout or a non-2xx answer so the caller
 * (the emergency job) retries.
 */
export async function invokeBackupHook(hook: Config["energy"]["backupHook"], call: BackupHookCall): Promise<{ status: number } | null> {
  if (!hook.url) return null;
  const body = JSON.stringify({ event: "power.backup", ...call });
  const headers: Record<string, string> = { "content-type": "application/json", "idempotency-key": call.changeId, "user-agent": "sahary-cloud" };
  if (hook.secret) headers["x-sahary-signature"] = `sha256=${createHmac("sha256", hook.secret).update(body).digest("hex")}`;
  let response: Response;
  try {
    response = await fetch(hook.url, { method: "POST", headers, body, signal: AbortSignal.timeout(hook.timeoutMs), redirect: "error" });
  } catch (error) {
    throw new BackupHookError(`backup hook unreachable: ${(error as Error).message}`, { cause: error });
  }
  await response.body?.cancel();
  if (!response.ok) throw new BackupHookError(`backup hook answered ${response.status}`);
  return { status: response.status };
}
