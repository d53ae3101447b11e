import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { eq } from "drizzle-orm";
import type { Browser } from "playwright-core";
import { users } from "../../db/schema";
import { createLogger } from "../../server/log";
import { mailBody, mailsTo, startMailingServer, STRONG_PASSWORD, uniqueEmail, type MailingServer } from "../harness/accounts";
import { launchBrowser, watchPage } from "../harness/browser";

/**
 * The pages behind the account emails, driven in a real headless Chromium:
 * the link from the delivered mail is opened as a person would, and the page
 * completes the flow through the API.
 */

let app: MailingServer;
let browser: Browser;
const logLines: string[] = [];

beforeAll(async () => {
  const log = createLogger({ level: "debug", base: { service: "test" }, sink: (line) => logLines.push(line) });
  [app, browser] = await Promise.all([startMailingServer({ log }), launchBrowser()]);
});
afterAll(async () => {
  await browser?.close();
  await app?.close();
});

/** The link the mail carries, re-pointed at the test server (whose port PUBLIC_URL cannot know in advance). */
function linkIn(mail: { raw: string }, page: string): { url: string; token: string } {
  const match = new RegExp(`https?://[^/\\s]+/${page}#token=([A-Za-z0-9_-]+)`).exec(mailBody(mail as never));
  if (!match) throw new Error(`no ${page} link in: ${mailBody(mail as never)}`);
  return { url: `${app.url}/${page}#token=${match[1]}`, token: match[1]! };
}

async function statusText(page: import("playwright-core").Page, expected: RegExp): Promise<string> {
  const status = page.locator("#status");
  await status.filter({ hasText: expected }).waitFor({ timeout: 20_000 });
  return (await status.textContent()) ?? "";
}

describe("/verify-email", () => {
  test("opening the mailed link confirms the address, then forgets the token", async () => {
    const email = uniqueEmail("page");
    await app.client().auth.register.mutate({ email, password: STRONG_PASSWORD, name: "Ada Page" });
    const [mail] = await mailsTo(app.mail, email);
    expect(mailBody(mail!)).not.toContain("console");
    const { url, token } = linkIn(mail!, "verify-email");

    const page = await browser.newPage();
    const seen = watchPage(page);
    await page.goto(url);
    expect(await statusText(page, /confirmed/)).toContain("Your email address is confirmed");
    // The token left the address bar (and so history and bookmarks).
    expect(page.url()).toBe(`${app.url}/verify-email`);
    const [user] = await app.services.db.select().from(users).where(eq(users.email, email));
    expect(user!.status).toBe("active");
    expect(seen.errors).toEqual([]);
    // The fragment never reaches the server: no log line carries the token.
    expect(logLines.some((line) => line.includes(token))).toBe(false);
    expect(logLines.some((line) => line.includes('"path":"/verify-email"'))).toBe(true);

    await page.close();

    // The same link a second time is spent.
    const again = await browser.newPage();
    await again.goto(url);
    expect(await statusText(again, /not valid/)).toContain("used already");
    await again.close();
  });

  test("a link without its token says so instead of calling the API", async () => {
    const page = await browser.newPage();
    const seen = watchPage(page);
    await page.goto(`${app.url}/verify-email`);
    expect(await statusText(page, /incomplete/)).toContain("Open the link from the email again");
    expect(seen.requests.filter((u) => u.includes("/trpc/"))).toEqual([]);
    await page.close();
  });

  test("the page allows only its own inline script and style, and requests only its own origin", async () => {
    const res = await fetch(`${app.url}/verify-email`);
    const csp = res.headers.get("content-security-policy")!;
    expect(csp).toContain("default-src 'none'");
    expect(csp).toMatch(/script-src 'sha256-[A-Za-z0-9+/=]+'$|script-src 'sha256-[A-Za-z0-9+/=]+';/);
    expect(csp).toContain("connect-src 'self'");
    expect(res.headers.get("referrer-policy")).toBe("no-referrer");
    const html = await res.text();
    expect(html).not.toMatch(/\bsrc=|\bhref="(?!data:)/);
    // An injected script (as if the page were altered) is refused by the browser.
    const page = await browser.newPage();
    const seen = watchPage(page);
    await page.goto(`${app.url}/verify-email#token=abc`);
    await statusText(page, /not valid|could not/);
    // (A string, evaluated in the page: the test project has no DOM types.)
    const ran = await page.evaluate(`(() => {
      const s = document.createElement("script");
      s.textContent = "window.__injected = true";
      document.body.append(s);
      return window.__injected === true;
    })()`);
    expect(ran).toBe(false);
    expect(seen.requests.every((u) => u.startsWith(app.url) || u.startsWith("data:"))).toBe(true);
    await page.close();
  });
});

describe("/forgot-password and /reset-password", () => {
  test("a person asks for a link, refuses a weak password, then sets a new one and can sign in with it", async () => {
    const email = uniqueEmail("reset");
    await app.client().auth.register.mutate({ email, password: STRONG_PASSWORD, name: "Grace Page" });
    await mailsTo(app.mail, email);

    const page = await browser.newPage();
    const seen = watchPage(page);
    await page.goto(`${app.url}/forgot-password`);
    await page.fill("#email", email);
    await page.click("#submit");
    expect(await statusText(page, /on its way/)).toContain("If an account uses that address");

    const [, resetMail] = await mailsTo(app.mail, email, 2);
    expect(mailBody(resetMail!)).not.toContain("console");
    const { url, token } = linkIn(resetMail!, "reset-password");
    await page.goto(url);
    expect(page.url()).toBe(`${app.url}/reset-password`);

    await page.fill("#password", "password123");
    await page.fill("#confirm", "password123");
    await page.click("#submit");
    expect(await statusText(page, /stronger/)).toContain("Choose a stronger password");
    expect(await page.locator("#status li").count()).toBeGreaterThan(0);

    await page.fill("#password", "different-1234567");
    await page.fill("#confirm", "different-7654321");
    await page.click("#submit");
    expect(await statusText(page, /differ/)).toContain("The two passwords differ");

    const fresh = "amber-lantern-quietly-97";
    await page.fill("#password", fresh);
    await page.fill("#confirm", fresh);
    await page.click("#submit");
    expect(await statusText(page, /changed/)).toContain("every session was signed out");
    expect(seen.errors).toEqual([]);
    expect(logLines.some((line) => line.includes(token))).toBe(false);
    await page.close();

    const session = await app.client().auth.login.mutate({ email, password: fresh });
    expect(session.user.email).toBe(email);
  });
});

describe("/docs in a browser", () => {
  test("renders the API reference from this server alone, without CSP violations", async () => {
    const page = await browser.newPage();
    const seen = watchPage(page);
    await page.goto(`${app.url}/docs`);
    await page.getByText("Sahary Cloud API").first().waitFor({ timeout: 60_000 });
    // The sidebar lists the procedures (the first group open).
    await page.getByText("admin.audit.list").first().waitFor({ timeout: 10_000 });
    const foreign = seen.requests.filter((u) => !u.startsWith(app.url) && !u.startsWith("data:") && !u.startsWith("blob:"));
    expect(foreign).toEqual([]);
    expect(seen.errors.filter((e) => /Content Security Policy|Refused to/i.test(e))).toEqual([]);
    await page.close();
  }, 90_000);
});
