import { existsSync } from "node:fs";
import { chromium, type Browser, type Page } from "playwright-core";

/** Debian's Chromium (provision.sh installs it); TEST_CHROMIUM points elsewhere. */
const EXECUTABLE = process.env.TEST_CHROMIUM ?? "/usr/bin/chromium";
const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-sync"];

/** A real headless Chromium, or a loud failure naming what is missing. */
export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(EXECUTABLE)) throw new Error(`Chromium is required by the browser tests and is missing at ${EXECUTABLE}: run npm test (provisioning installs it) or set TEST_CHROMIUM.`);
  return chromium.launch({ executablePath: EXECUTABLE, headless: true, args: FLAGS });
}

/**
 * What a page did that a test should see: script errors and CSP violations
 * (`errors`), every URL it requested, and answers with an error status
 * (`failedLoads`, which a page showing a refusal expects).
 */
export function watchPage(page: Page) {
  const seen = { errors: [] as string[], requests: [] as string[], failedLoads: [] as string[] };
  page.on("console", (message) => {
    if (message.type() !== "error") return;
    if (message.text().startsWith("Failed to load resource")) seen.failedLoads.push(message.text());
    else seen.errors.push(message.text());
  });
  page.on("pageerror", (error) => seen.errors.push(error.message));
  page.on("request", (request) => seen.requests.push(request.url()));
  return seen;
}
