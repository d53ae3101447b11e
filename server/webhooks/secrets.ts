import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from "node:crypto";

/**
 * Endpoint signing secrets. Signing needs the secret itself, so unlike API
 * keys it cannot be stored as a hash: it is sealed with AES-256-GCM under a
 * key derived (HKDF-SHA256) from APP_SECRET. A copy of the database alone
 * then neither reveals secrets nor lets anyone forge our signatures; the
 * authentication tag makes a tampered row fail to open rather than sign with
 * garbage. Rotating APP_SECRET makes stored secrets unreadable: endpoints then
 * need `rotateSecret` (docs/notifications.md, "Outgoing webhooks").
 */

export const SECRET_PREFIX = "whsec_";
/** Standard Webhooks asks for at least 24 random bytes; 32 matches the HMAC-SHA256 block of key material. */
const SECRET_BYTES = 32;
const SEAL_VERSION = "v1";

/** A new secret as shown to the customer: `whsec_` + base64 of 32 random bytes. */
export function generateSecret(): string {
  return SECRET_PREFIX + randomBytes(SECRET_BYTES).toString("base64");
}

const sealKeys = new Map<string, Buffer>();
/** Derived once per APP_SECRET: every attempt opens a secret. */
function sealKey(appSecret: string): Buffer {
  let key = sealKeys.get(appSecret);
  if (!key) {
    key = Buffer.from(hkdfSync("sha256", appSecret, "sahary-webhook-secrets", "webhook endpoint signing secret", 32));
    sealKeys.set(appSecret, key);
  }
  return key;
}

export function sealSecret(appSecret: string, secret: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", sealKey(appSecret), iv);
  const sealed = Buffer.concat([cipher.update(secret, "utf8"), cipher.final()]);
  return [SEAL_VERSION, iv.toString("base64url"), cipher.getAuthTag().toString("base64url"), sealed.toString("base64url")].join(".");
}

export function openSecret(appSecret: string, sealed: string): string {
  const [version, iv, tag, body] = sealed.split(".");
  if (version !== SEAL_VERSION || !iv || !tag || !body) throw new Error("not a sealed webhook secret");
  const decipher = createDecipheriv("aes-256-gcm", sealKey(appSecret), Buffer.from(iv, "base64url"));
  decipher.setAuthTag(Buffer.from(tag, "base64url"));
  return Buffer.concat([decipher.update(Buffer.from(body, "base64url")), decipher.final()]).toString("utf8");
}

/**
 * The `webhook-signature` header: `v1,<base64 HMAC-SHA256>` of
 * `{id}.{timestamp}.{body}` under each secret's bytes (the base64 after
 * `whsec_`), space-separated (the new secret first, then the previous one
 * while a rotation's grace period runs). Computed with node:crypto rather than
 * the `standardwebhooks` package's pure-JS HMAC (0.6 ms per signature here,
 * about a tenth of an attempt's CPU); the tests verify it with that package
 * and with svix.
 */
export function signatureHeader(secrets: readonly string[], messageId: string, at: Date, body: string): string {
  const content = `${messageId}.${Math.floor(at.getTime() / 1000)}.${body}`;
  return secrets
    .map(
      (secret) =>
        `v1,${createHmac("sha256", Buffer.from(secret.slice(SECRET_PREFIX.length), "base64"))
          .update(content)
          .digest("base64")}`,
    )
    .join(" ");
}
