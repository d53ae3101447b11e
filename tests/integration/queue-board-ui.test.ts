import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { eq } from "drizzle-orm";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { users } from "../../db/schema";
import { boardUi, patchBoardScript } from "../../server/admin/queue-board-ui";
import { launchBrowser, watchPage } from "../harness/browser";
import { eventually, startTestServer, type TestServer } from "../harness/server";
import { createUserWithSession } from "../harness/users";

/**
 * The queue dashboard as people see it, in a real headless Chromium: what it
 * offers each role must be exactly what the server lets that role do, and a
 * refusal must say why.
 */

const REFUSED_LABELS = ["Add job", "Set concurrency", "Set rate limit", "Empty", "Obliterate"];

let app: TestServer;
let browser: Browser;
beforeAll(async () => {
  [app, browser] = await Promise.all([startTestServer(), launchBrowser()]);
});
afterAll(async () => {
  await browser?.close();
  await app?.close();
});

async function signedIn(role: "admin" | "operator"): Promise<{ context: BrowserContext; page: Page; userId: string; seen: ReturnType<typeof watchPage> }> {
  const { user, token } = await createUserWithSession(app.services, { role });
  const context = await browser.newContext({ extraHTTPHeaders: { authorization: `Bearer ${token}` }, viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  return { context, page, userId: user.id, seen: watchPage(page) };
}

/** A delayed job to look at (BullMQ ids: no ':'). */
async function delayedJob(queue: "mail" | "billing") {
  const id = `board-ui-${crypto.randomUUID()}`;
  await app.services.queues.queue(queue).add("sweep" as never, {} as never, { jobId: id, delay: 3_600_000 });
  return id;
}

describe("the UI's scripts", () => {
  test("are served without the controls the server refuses, and still parse", () => {
    const ui = boardUi();
    expect(ui.problems).toEqual([]);
    expect(ui.complete).toBe(true);
    for (const script of ui.scripts.values()) {
      for (const key of ["QUEUE.ACTIONS.ADD_JOB", "QUEUE.ACTIONS.EMPTY", "QUEUE.ACTIONS.OBLITERATE", "SCHEDULERS.ACTIONS.EDIT", "SCHEDULERS.ACTIONS.REMOVE"]) expect(script).not.toContain(`"${key}"`);
    }
  });

  test("the edit takes out exactly the labelled element and the refused job actions", () => {
    const source = `x=(0,l.jsxs)(m.p,{children:[(0,l.jsxs)(c.D,{onClick:a.addJob,children:[(0,l.jsx)(j,{}),t("QUEUE.ACTIONS.ADD_JOB")]}),(0,l.jsx)(c.D,{onClick:a.pause,children:t("QUEUE.ACTIONS.PAUSE")})]});ed={[n.f.failed]:[ec.retry,ec.duplicate,ec.updateData,ec.clean],[n.f.delayed]:[ec.promote,ec.reschedule]}`;
    const { source: patched, jobActionMaps } = patchBoardScript(source);
    expect(patched).toBe(`x=(0,l.jsxs)(m.p,{children:[null,(0,l.jsx)(c.D,{onClick:a.pause,children:t("QUEUE.ACTIONS.PAUSE")})]});ed={[n.f.failed]:[ec.retry,ec.clean],[n.f.delayed]:[ec.promote]}`);
    expect(jobActionMaps).toBe(1);
  });

  test("the page loads no font or anything else from another site", async () => {
    const { context, page, seen } = await signedIn("operator");
    await page.goto(`${app.url}/admin/queues`);
    await page.getByText("mail").first().waitFor({ timeout: 30_000 });
    expect(seen.requests.filter((u) => !u.startsWith(app.url) && !u.startsWith("data:"))).toEqual([]);
    await context.close();
  });
});

describe("what each role is offered", () => {
  test("an admin is offered the repairs (promote, clean, pause), and nothing the server refuses", async () => {
    const jobId = await delayedJob("mail");
    const { context, page, seen } = await signedIn("admin");
    await page.goto(`${app.url}/admin/queues/queue/mail?status=delayed`);
    await page.getByText(jobId).waitFor({ timeout: 30_000 });
    // The job offers promote and clean, not reschedule, duplicate or edit. (Other files of the run may
    // have left delayed jobs too: look at this job's card, the innermost element holding its id and its buttons.)
    const card = page
      .locator("div", { has: page.getByText(jobId, { exact: true }) })
      .filter({ has: page.locator("ul[class*=jobActions]") })
      .last();
    expect(await card.locator("ul[class*=jobActions] button").count()).toBe(2);
    await page.getByRole("button", { name: "Promote all" }).waitFor();
    // The queue's menu offers pausing, and retrying failed jobs when other files of the run left some (a repair the server allows).
    await page.locator("button[class*=trigger-]").last().click();
    const items = (await page.getByRole("menuitem").allTextContents()).map((s) => s.trim());
    expect(items.filter((item) => !/^Retry all \d+ failed jobs?$/.test(item))).toEqual(["Pause"]);
    for (const label of REFUSED_LABELS) expect(items).not.toContain(label);
    // And what is offered works.
    await page.getByRole("menuitem", { name: "Pause" }).click();
    await page.getByRole("button", { name: "Confirm" }).click();
    await eventually(
      () => app.services.queues.queue("mail").isPaused(),
      (paused) => paused,
      { what: "the mail queue to pause", timeoutMs: 15_000 },
    );
    await app.services.queues.queue("mail").resume();
    expect(seen.errors).toEqual([]);
    await context.close();
  }, 90_000);

  test("an operator is offered no action at all", async () => {
    const jobId = await delayedJob("billing");
    const { context, page } = await signedIn("operator");
    await page.goto(`${app.url}/admin/queues/queue/billing?status=delayed`);
    await page.getByText(jobId).waitFor({ timeout: 30_000 });
    expect(await page.locator("ul[class*=jobActions] button").count()).toBe(0);
    expect(await page.getByRole("button", { name: "Promote all" }).count()).toBe(0);
    expect(await page.getByRole("button", { name: "Clean all" }).count()).toBe(0);
    expect(await page.locator("button[class*=trigger-GNtOnV]").count()).toBe(0);
    await context.close();
  }, 60_000);
});

describe("a refusal", () => {
  test("shows the server's reason in the UI, not an empty notice", async () => {
    const { context, page, userId } = await signedIn("admin");
    await page.goto(`${app.url}/admin/queues/queue/mail`);
    await page.locator("button[class*=trigger-]").last().waitFor({ timeout: 30_000 });
    // The admin becomes an operator while the page is open; the next change is refused.
    await app.services.db.update(users).set({ role: "operator" }).where(eq(users.id, userId));
    await page.locator("button[class*=trigger-]").last().click();
    await page.getByRole("menuitem", { name: "Pause" }).click();
    await page.getByRole("button", { name: "Confirm" }).click();
    await page.getByText("The queue dashboard is read-only for operators").waitFor({ timeout: 15_000 });
    await page.getByText("Forbidden").first().waitFor();
    expect(await app.services.queues.queue("mail").isPaused()).toBe(false);
    await context.close();
  }, 60_000);

  test("keeps the API's error envelope for programs", async () => {
    const { token } = await createUserWithSession(app.services, { role: "operator" });
    const res = await fetch(`${app.url}/admin/queues/api/queues/mail/pause`, { method: "PUT", headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(403);
    const body = (await res.json()) as { error: { key: string; data: { appCode: string } }; message: string; code: string };
    expect(body.error.data.appCode).toBe("FORBIDDEN");
    expect(body.error.key).toBe("ERRORS.FORBIDDEN");
    expect(body.message).toBe("The queue dashboard is read-only for operators");
  });
});
