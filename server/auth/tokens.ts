import { createHash, createHmac } from "node:crypto";
import { encodeBase32LowerCaseNoPadding } from "@oslojs/encoding";

/**
 * Random credentials and the one-way forms the database stores.
 * - Session tokens: SHA-256 (the session id). Unkeyed, so sessions survive
 *   an APP_SECRET rotation. Node's native digest: it runs on every request,
 *   and is about five times faster here than a JavaScript SHA-256.
 * - API keys and email tokens: HMAC-SHA256 keyed by APP_SECRET, so a copy of
 *   the database alone cannot even be used to confirm a guessed credential.
 *   Rotating APP_SECRET invalidates them.
 */

/** 256 bits from the CSPRNG as 52 lower-case base32 characters (cookie, header and URL safe). */
export function generateToken(bytes = 32): string {
  return encodeBase32LowerCaseNoPadding(crypto.getRandomValues(new Uint8Array(bytes)));
}

/** The shape `generateToken()` produces; anything else cannot be a credential of ours. */
export const TOKEN_PATTERN = /^[a-z2-7]{52}$/;

export function sha256Hex(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

/** What a stored credential is for; part of the MAC so a hash for one use never matches another. */
export type CredentialPurpose = "api_key" | "verify_email" | "reset_password" | "rate_limit";

export function credentialMac(secret: string, purpose: CredentialPurpose, value: string): string {
  return createHmac("sha256", secret).update(purpose).update("\0").update(value).digest("hex");
}
