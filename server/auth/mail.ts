import type { Config } from "../config";
import type { NewMail } from "../mail/outbox";

/**
 * The messages the auth flows send. Links carry the token in the fragment
 * (`#token=`), which browsers never send to a server, so it stays out of
 * access logs and Referer headers; the page there (server/pages) posts it to the API.
 */

const SIGNATURE = "\n-- \nSahary Cloud, hosting that runs on sunlight\n";

function link(config: Config, page: string, token: string): string {
  return `${config.publicUrl.replace(/\/+$/, "")}/${page}#token=${token}`;
}

function until(date: Date): string {
  return `${date.toISOString().replace("T", " ").slice(0, 16)} UTC`;
}

export function verificationMail(config: Config, to: string, token: string, expiresAt: Date): NewMail {
  return {
    to,
    kind: "auth.verify_email",
    sensitive: true,
    subject: "Confirm your Sahary Cloud email address",
    text:
      `Welcome to Sahary Cloud.\n\nConfirm your email address by opening this link (valid until ${until(expiresAt)}):\n\n` +
      `${link(config, "verify-email", token)}\n\n` +
      `If you did not create an account, ignore this message.\n${SIGNATURE}`,
  };
}

/** Sent instead of a second account, so registration never says whether an address is taken. */
export function accountExistsMail(config: Config, to: string): NewMail {
  return {
    to,
    kind: "auth.account_exists",
    subject: "You already have a Sahary Cloud account",
    text:
      `Someone (hopefully you) tried to create a Sahary Cloud account with this address, which already has one.\n\n` +
      `Sign in with your password as usual. Forgot it? Choose a new one at ${config.publicUrl.replace(/\/+$/, "")}/forgot-password\n\n` +
      `If this was not you, you can ignore this message: nothing has changed.\n${SIGNATURE}`,
  };
}

export function passwordResetMail(config: Config, to: string, token: string, expiresAt: Date): NewMail {
  return {
    to,
    kind: "auth.password_reset",
    sensitive: true,
    subject: "Reset your Sahary Cloud password",
    text:
      `A password reset was requested for your Sahary Cloud account.\n\nChoose a new password by opening this link (valid until ${until(expiresAt)}, once):\n\n` +
      `${link(config, "reset-password", token)}\n\n` +
      `If you did not ask for this, ignore this message: your password stays as it is.\n${SIGNATURE}`,
  };
}

/** `apiKeys`: how many keys the change revoked, or how many still work when the owner kept them. */
export function passwordChangedMail(config: Config, to: string, how: "changed" | "reset", apiKeys: { revoked: number } | { kept: number }): NewMail {
  const keys =
    "revoked" in apiKeys
      ? apiKeys.revoked > 0
        ? `${apiKeys.revoked} API ${apiKeys.revoked === 1 ? "key was" : "keys were"} revoked with it: create new ones for your scripts and integrations.\n\n`
        : ""
      : apiKeys.kept > 0
        ? `Your ${apiKeys.kept} API ${apiKeys.kept === 1 ? "key still works" : "keys still work"}, as you asked: revoke ${apiKeys.kept === 1 ? "it" : "any"} in the console if ${apiKeys.kept === 1 ? "it" : "one"} may have leaked.\n\n`
        : "";
  return {
    to,
    kind: "auth.password_changed",
    subject: "Your Sahary Cloud password was changed",
    text:
      `The password of your Sahary Cloud account was ${how === "reset" ? "reset with an emailed link" : "changed"}, ` +
      `and ${how === "reset" ? "every session was" : "your other sessions were"} signed out.\n\n` +
      keys +
      `If this was not you, reset your password at once at ${config.publicUrl.replace(/\/+$/, "")}/forgot-password and contact support.\n${SIGNATURE}`,
  };
}
