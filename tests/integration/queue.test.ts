import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { eq } from "drizzle-orm";
import { mailMessages } from "../../db/schema";
import { dispatchMail, queueMail } from "../../server/mail/outbox";
import { eventually, startTestServer, type TestServer } from "../harness/server";

let app: TestServer;
beforeAll(async () => {
  app = await startTestServer({ workers: true });
});
afterAll(() => app.close());

const messageRow = (id: string) => app.services.db.query.mailMessages.findFirst({ where: eq(mailMessages.id, id) });

describe("the queue path, end to end", () => {
  test("server code enqueues, the worker delivers, the result is visible", async () => {
    const id = await queueMail(app.services.db, { to: "ops@example.test", subject: "Hello from the queue", text: "It works.", kind: "test" });
    await dispatchMail(app.services.queues, id);
    const row = await eventually(
      () => messageRow(id),
      (r) => r?.status === "sent",
      { what: "mail to be sent" },
    );
    expect(row!.attempts).toBe(1);
    expect(row!.sentAt).toBeInstanceOf(Date);
    const file = join(app.services.config.mail.dir, `${id}.eml`);
    expect(existsSync(file)).toBe(true);
    const eml = readFileSync(file, "utf8");
    expect(eml).toContain("Subject: Hello from the queue");
    expect(eml).toContain("To: ops@example.test");
  });

  test("dispatching the same message twice delivers it once", async () => {
    const id = await queueMail(app.services.db, { to: "twice@example.test", subject: "Once only", text: "x", kind: "test" });
    await Promise.all([dispatchMail(app.services.queues, id), dispatchMail(app.services.queues, id)]);
    await eventually(
      () => messageRow(id),
      (r) => r?.status === "sent",
      { what: "mail to be sent" },
    );
    await Bun.sleep(300);
    expect((await messageRow(id))!.attempts).toBe(1);
  });

  test("the contract refuses a payload that does not match its schema", async () => {
    await expect(app.services.queues.enqueue("mail", "send", { messageId: "not-a-uuid" })).rejects.toThrow();
  });

  test("the sweep re-enqueues outbox messages whose enqueue was lost", async () => {
    const id = await queueMail(app.services.db, { to: "lost@example.test", subject: "Lost enqueue", text: "x", kind: "test" });
    await app.services.db
      .update(mailMessages)
      .set({ createdAt: new Date(Date.now() - 10 * 60_000) })
      .where(eq(mailMessages.id, id));
    await app.services.queues.enqueue("mail", "sweep", {});
    await eventually(
      () => messageRow(id),
      (r) => r?.status === "sent",
      { what: "swept mail to be sent" },
    );
  });
});
