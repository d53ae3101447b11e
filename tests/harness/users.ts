import type { Services } from "../../server/services";
import { users } from "../../db/schema";

let counter = 0;

/**
 * A user written straight to the database with a live session, for tests of
 * other domains. (The auth flows themselves are tested through the API.)
 */
export async function createUserWithSession(
  services: Pick<Services, "db" | "sessions">,
  opts: { role?: "customer" | "operator" | "admin"; status?: "unverified" | "active" | "suspended"; email?: string; name?: string } = {},
) {
  counter += 1;
  const email = opts.email ?? `user${counter}-${crypto.randomUUID().slice(0, 8)}@example.test`;
  const [user] = await services.db
    .insert(users)
    .values({
      email,
      name: opts.name ?? `Test User ${counter}`,
      passwordHash: await Bun.password.hash("correct horse battery staple", { algorithm: "argon2id", memoryCost: 4096, timeCost: 1 }),
      role: opts.role ?? "customer",
      status: opts.status ?? "active",
      emailVerifiedAt: opts.status === "unverified" ? null : new Date(),
    })
    .returning();
  const session = await services.sessions.create(user!.id, { ip: "127.0.0.1", userAgent: "bun-test" });
  return { user: user!, token: session.token, cookie: session.cookie };
}
