import { Hono } from "hono";
import type { AppEnv } from "../app";
import { renderPage, type Page } from "./layout";

/**
 * The pages behind the account emails' links. Each completes its flow by
 * calling the same tRPC procedure an API client would; the server only
 * serves static HTML and never sees the token.
 */

const verifyEmail: Page = {
  title: "Confirm your email address",
  body: `<p id="intro">Confirming…</p>`,
  script: `
(async () => {
  const intro = document.getElementById("intro");
  const token = takeToken();
  if (!token) { intro.textContent = ""; show("error", "This link is incomplete. Open the link from the email again, exactly as it was sent."); return; }
  const result = await mutate("auth.verifyEmail", { token });
  intro.textContent = "";
  if (result.ok) return show("ok", "Your email address is confirmed. You can close this page and sign in.");
  if (result.code === "TOKEN_EXPIRED") return show("error", "This link has expired. Sign in and ask for a new confirmation email.");
  if (result.code === "TOKEN_INVALID") return show("error", "This link is not valid any more: it was used already, or a newer email replaced it.");
  if (result.code === "RATE_LIMITED") return show("error", "Too many attempts." + retryText(result.details));
  show("error", "The address could not be confirmed (" + result.code + ")." + retryText(result.details));
})();
`,
};

const resetPassword: Page = {
  title: "Choose a new password",
  body: `<form id="form" novalidate>
<label for="password">New password</label>
<input id="password" name="password" type="password" autocomplete="new-password" minlength="10" maxlength="256" required>
<label for="confirm">Repeat it</label>
<input id="confirm" name="confirm" type="password" autocomplete="new-password" required>
<button id="submit" type="submit">Change password</button>
</form>`,
  script: `
const token = takeToken();
const form = document.getElementById("form");
if (!token) { form.hidden = true; show("error", "This link is incomplete. Open the link from the email again, exactly as it was sent."); }
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const password = document.getElementById("password").value;
  if (password !== document.getElementById("confirm").value) return show("error", "The two passwords differ.");
  if (password.length < 10) return show("error", "Use at least 10 characters.");
  const button = document.getElementById("submit");
  button.disabled = true;
  show("", "Saving…");
  const result = await mutate("auth.resetPassword", { token, password });
  button.disabled = false;
  if (result.ok) { form.hidden = true; return show("ok", "Your password is changed and every session was signed out. Sign in with the new password."); }
  if (result.code === "WEAK_PASSWORD") return show("error", "Choose a stronger password:", (result.details && result.details.reasons) || [result.message]);
  if (result.code === "TOKEN_EXPIRED") { form.hidden = true; return show("error", "This link has expired. Ask for a new one."); }
  if (result.code === "TOKEN_INVALID") { form.hidden = true; return show("error", "This link is not valid any more: it was used already, or a newer email replaced it."); }
  if (result.code === "RATE_LIMITED") return show("error", "Too many attempts." + retryText(result.details));
  show("error", "The password could not be changed (" + result.code + ")." + retryText(result.details));
});
`,
};

const forgotPassword: Page = {
  title: "Reset your password",
  body: `<form id="form" novalidate>
<label for="email">Email address</label>
<input id="email" name="email" type="email" autocomplete="email" maxlength="254" required>
<button id="submit" type="submit">Send me a link</button>
</form>`,
  script: `
const form = document.getElementById("form");
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const email = document.getElementById("email").value.trim();
  if (!email.includes("@")) return show("error", "Enter the email address of your account.");
  const button = document.getElementById("submit");
  button.disabled = true;
  const result = await mutate("auth.requestPasswordReset", { email });
  button.disabled = false;
  if (result.ok) { form.hidden = true; return show("ok", "If an account uses that address, a link to choose a new password is on its way. It works once, for a limited time."); }
  if (result.code === "RATE_LIMITED") return show("error", "Too many requests." + retryText(result.details));
  if (result.code === "VALIDATION_FAILED") return show("error", "That does not look like an email address.");
  show("error", "The request failed (" + result.code + ")." + retryText(result.details));
});
`,
};

/** Where the account emails link to (server/auth/mail.ts). */
export const ACCOUNT_PAGES = { "/verify-email": verifyEmail, "/reset-password": resetPassword, "/forgot-password": forgotPassword } as const;

export function accountPageRoutes() {
  const routes = new Hono<AppEnv>();
  for (const [path, page] of Object.entries(ACCOUNT_PAGES)) {
    const { html, csp } = renderPage(page);
    routes.get(path, (c) => c.html(html, 200, { "content-security-policy": csp, "cache-control": "no-store", "referrer-policy": "no-referrer" }));
  }
  return routes;
}
