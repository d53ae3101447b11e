import { createHash, createHmac } from "node:crypto";

/**
 * Random credentials and the one-way forms the database stores.
 * - Session tokens: SHA-256 (the Lucia session id). Unkeyed, so sessions
 *   survive an APP_SECRET rotation.
 * - API keys and email tokens: HMAC-SHA256 keyed by APP_SECRET, so a copy of
 *   the database alone cannot even be used to confirm a guessed credential.
 *   Rotating APP_SECRET invalidates them.
 */

const ALPHABET = "abcdefghijklmnopqrstuvwxyz234567";

/** 256 bits from the CSPRNG as 52 lower-case base32 characters (cookie, header and URL safe). */
export function generateToken(bytes = 32): string {
  const data = crypto.getRandomValues(new Uint8Array(bytes));
  let out = "";
  let buffer = 0;
  let bits = 0;
  for (const byte of data) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(buffer >>> (bits - 5)) & 31];
      bits -= 5;
    }
    buffer &= (1 << bits) - 1;
  }
  if (bits > 0) out += ALPHABET[(buffer << (5 - bits)) & 31];
  return out;
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
