import { eq } from "drizzle-orm";
import * as v from "valibot";
import type { Database } from "../../db/client";
import { users } from "../../db/schema";
import { systemActor } from "../auth/actor";
import { EmailSchema } from "../auth/email";
import { recordAudit } from "../audit";
import { AppError } from "../errors";

/**
 * Makes an existing account an admin from the machine's shell: how a fresh
 * installation gets its first admin (every admin procedure needs an admin).
 * Whoever can run commands on the box already controls the platform, so the
 * shell vouches for the account: an unverified one is activated. A suspended
 * account is refused; lift the suspension deliberately instead.
 */
export async function grantAdmin(db: Database, rawEmail: string) {
  const parsed = v.safeParse(EmailSchema, rawEmail);
  if (!parsed.success) throw new AppError("VALIDATION_FAILED", `Not an email address: ${rawEmail}`);
  const email = parsed.output;
  return db.transaction(async (tx) => {
    const [user] = await tx.select().from(users).where(eq(users.email, email)).for("update");
    if (!user) throw new AppError("NOT_FOUND", `No account uses ${email}; register it first (auth.register)`);
    if (user.status === "suspended") throw new AppError("ACCOUNT_SUSPENDED", `${email} is suspended; reactivate it before granting admin`);
    if (user.role === "admin" && user.status === "active") return { userId: user.id, email, changed: false };
    await tx.update(users).set({ role: "admin", status: "active" }).where(eq(users.id, user.id));
    await recordAudit(
      tx,
      { actor: systemActor("cli") },
      {
        action: "admin.user.granted_from_shell",
        targetType: "user",
        targetId: user.id,
        metadata: { from: { role: user.role, status: user.status }, to: { role: "admin", status: "active" } },
      },
    );
    return { userId: user.id, email, changed: true };
  });
}
