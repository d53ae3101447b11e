import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { and, eq } from "drizzle-orm";
import { auditLog, users } from "../../db/schema";
import { expectAppError } from "../harness/expect";
import { processEnv, projectRoot } from "../harness/process";
import { startTestServer, type TestServer } from "../harness/server";
import { createUserWithSession } from "../harness/users";

let app: TestServer;
beforeAll(async () => {
  app = await startTestServer();
});
afterAll(() => app.close());

async function grant(email?: string) {
  const child = Bun.spawn([process.execPath, "server/grant-admin.ts", ...(email ? [email] : [])], { cwd: projectRoot, env: processEnv(), stdout: "pipe", stderr: "pipe" });
  const [code, out, err] = await Promise.all([child.exited, new Response(child.stdout).text(), new Response(child.stderr).text()]);
  return { code, out, err };
}

describe("the first admin, granted from the shell", () => {
  test("an unverified customer becomes an active admin, audited, and can use admin procedures at once", async () => {
    const { user, token } = await createUserWithSession(app.services, { status: "unverified" });
    await expectAppError(app.client({ token }).admin.users.list.query({}), "EMAIL_NOT_VERIFIED");

    const { code, out } = await grant(`  ${user.email.toUpperCase()} `);
    expect(code).toBe(0);
    expect(out).toContain("is now an admin");
    const [row] = await app.services.db.select().from(users).where(eq(users.id, user.id));
    expect({ role: row!.role, status: row!.status }).toEqual({ role: "admin", status: "active" });
    const audit = await app.services.db
      .select()
      .from(auditLog)
      .where(and(eq(auditLog.targetId, user.id), eq(auditLog.action, "admin.user.granted_from_shell")));
    expect(audit).toHaveLength(1);
    expect(audit[0]!.actorType).toBe("system");

    const list = await app.client({ token }).admin.users.list.query({ query: user.email });
    expect(list.items.map((u) => u.id)).toEqual([user.id]);

    const again = await grant(user.email);
    expect(again.code).toBe(0);
    expect(again.out).toContain("was already an admin");
  });

  test("an unknown address, a suspended account and a missing argument are refused with a clear message", async () => {
    const unknown = await grant("nobody-here@example.test");
    expect(unknown.code).toBe(1);
    expect(unknown.err).toContain("No account uses nobody-here@example.test");

    const { user } = await createUserWithSession(app.services, { status: "suspended" });
    const suspended = await grant(user.email);
    expect(suspended.code).toBe(1);
    expect(suspended.err).toContain("is suspended");
    const [row] = await app.services.db.select().from(users).where(eq(users.id, user.id));
    expect(row!.role).toBe("customer");

    const missing = await grant();
    expect(missing.code).toBe(64);
    expect(missing.err).toContain("usage:");
  });
});
