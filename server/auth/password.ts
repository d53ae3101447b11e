import type { Config } from "../config";
import { AppError } from "../errors";
import { COMMON_PASSWORDS } from "./common-passwords";

/**
 * Password hashing (Argon2id through Bun.password, parameters from config) and
 * the strength policy. The policy follows NIST SP 800-63B: a minimum length,
 * no composition rules, and a refusal of passwords an attacker tries first.
 */

export const MIN_PASSWORD_LENGTH = 10;
/** Input schemas refuse longer passwords before any hashing happens. */
export const MAX_PASSWORD_LENGTH = 256;
const MIN_DISTINCT_CHARACTERS = 5;

export type PasswordHashParams = Config["auth"]["passwordHash"];

export function hashPassword(password: string, params: PasswordHashParams): Promise<string> {
  return Bun.password.hash(password, { algorithm: "argon2id", memoryCost: params.memoryKib, timeCost: params.timeCost });
}

/** Parameters travel inside the hash, so hashes made under older settings still verify. */
export function verifyPassword(password: string, hash: string): Promise<boolean> {
  return Bun.password.verify(password, hash);
}

/** True when the hash was made with other parameters than the configured ones (upgrade on next login). */
export function needsRehash(hash: string, params: PasswordHashParams): boolean {
  const match = /^\$argon2id\$v=\d+\$m=(\d+),t=(\d+),p=\d+\$/.exec(hash);
  return !match || Number(match[1]) !== params.memoryKib || Number(match[2]) !== params.timeCost;
}

const dummyHashes = new Map<string, Promise<string>>();

/**
 * Spends the time a real verification would, for an account that does not
 * exist, so the answer's timing does not tell whether the email is registered.
 */
export async function verifyAgainstNothing(password: string, params: PasswordHashParams): Promise<false> {
  const key = `${params.memoryKib}:${params.timeCost}`;
  let dummy = dummyHashes.get(key);
  if (!dummy) {
    dummy = hashPassword(crypto.randomUUID(), params);
    dummyHashes.set(key, dummy);
  }
  await verifyPassword(password, await dummy);
  return false;
}

export type WeakPasswordReason = "too_short" | "common" | "contains_email" | "contains_name" | "too_repetitive" | "same_as_current";

/** The reasons a password is refused (empty when it is acceptable). */
export function passwordWeaknesses(password: string, account: { email: string; name?: string | null }): WeakPasswordReason[] {
  const reasons: WeakPasswordReason[] = [];
  const chars = [...password];
  if (chars.length < MIN_PASSWORD_LENGTH) reasons.push("too_short");

  const lower = password.toLowerCase();
  const compact = lower.replace(/\s+/g, "");
  const core = compact.replace(/^[\d\W_]+|[\d\W_]+$/g, "");
  if (COMMON_PASSWORDS.has(compact) || COMMON_PASSWORDS.has(core) || isSequence(compact)) reasons.push("common");

  const email = account.email.toLowerCase();
  const local = email.split("@")[0] ?? "";
  if (compact === email.replace(/\s+/g, "") || (local.length >= 4 && compact.includes(local))) reasons.push("contains_email");

  const name = account.name?.toLowerCase().replace(/\s+/g, "") ?? "";
  if (name.length >= 4 && compact.includes(name)) reasons.push("contains_name");

  if (new Set(chars).size < MIN_DISTINCT_CHARACTERS) reasons.push("too_repetitive");
  return reasons;
}

/** Throws WEAK_PASSWORD naming every reason, so a client can explain it in one go. */
export function assertStrongPassword(password: string, account: { email: string; name?: string | null }, extra: WeakPasswordReason[] = []): void {
  const reasons = [...passwordWeaknesses(password, account), ...extra];
  if (reasons.length === 0) return;
  throw new AppError("WEAK_PASSWORD", `Choose a stronger password: ${reasons.map(describe).join("; ")}`, {
    details: { reasons, minLength: MIN_PASSWORD_LENGTH },
  });
}

function describe(reason: WeakPasswordReason): string {
  switch (reason) {
    case "too_short":
      return `use at least ${MIN_PASSWORD_LENGTH} characters`;
    case "common":
      return "it is one of the first passwords attackers try";
    case "contains_email":
      return "it must not contain your email address";
    case "contains_name":
      return "it must not contain your name";
    case "too_repetitive":
      return `use at least ${MIN_DISTINCT_CHARACTERS} different characters`;
    case "same_as_current":
      return "it must differ from the current password";
  }
}

/** "abcdefghijk", "9876543210": runs of consecutive characters. */
function isSequence(s: string): boolean {
  if (s.length < 4) return false;
  const step = s.charCodeAt(1) - s.charCodeAt(0);
  if (Math.abs(step) !== 1) return false;
  for (let i = 2; i < s.length; i++) if (s.charCodeAt(i) - s.charCodeAt(i - 1) !== step) return false;
  return true;
}
