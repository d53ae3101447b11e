import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { eq, sql } from "drizzle-orm";
import { sessions } from "../../db/schema";
import { sessionIdOf } from "../../server/auth/session";
import { startTestServer, type TestServer } from "../harness/server";
import { createUserWithSession } from "../harness/users";

/**
 * The sliding refresh (issue 15): however many requests arrive at once in a
 * session's refresh window, and in however many API processes, the session
 * row is rewritten once and one response carries the new cookie. Two apps
 * with their own connection pools and caches stand for two processes; a
 * trigger counts the row updates PostgreSQL actually performs.
 */

let one: TestServer;
let two: TestServer;

beforeAll(async () => {
  [one, two] = await Promise.all([startTestServer(), startTestServer()]);
  await one.services.db.execute(sql`create table if not exists refresh_probe (session_id text not null)`);
  await one.services.db.execute(sql`
    create or replace function refresh_probe() returns trigger language plpgsql as $$
    begin insert into refresh_probe values (old.id); return null; end $$`);
  await one.services.db.execute(sql`drop trigger if exists refresh_probe on sessions`);
  await one.services.db.execute(sql`create trigger refresh_probe after update of expires_at on sessions for each row execute function refresh_probe()`);
});
afterAll(async () => {
  await one?.services.db.execute(sql`drop trigger if exists refresh_probe on sessions`);
  await one?.services.db.execute(sql`drop function if exists refresh_probe()`);
  await one?.services.db.execute(sql`drop table if exists refresh_probe`);
  await Promise.all([one?.close(), two?.close()]);
});

const updatesOf = async (id: string) => ((await one.services.db.execute(sql`select count(*)::int as n from refresh_probe where session_id = ${id}`)) as unknown as { n: number }[])[0]!.n;

/** A session whose sliding expiry is an hour away: inside the refresh window (the last half of seven days). */
async function sessionDueForRefresh() {
  const { token } = await createUserWithSession(one.services);
  const id = sessionIdOf(token);
  await one.services.db
    .update(sessions)
    .set({ expiresAt: new Date(Date.now() + 3_600_000) })
    .where(eq(sessions.id, id));
  await one.services.changes.settle();
  return { token, id, updatesBefore: await updatesOf(id) };
}

/** `n` requests at once, alternating between the two apps. */
function burst(n: number, headers: Record<string, string>) {
  return Promise.all(Array.from({ length: n }, (_, i) => fetch(`${(i % 2 ? two : one).url}/trpc/auth.me`, { headers })));
}

describe("sliding refresh under concurrency", () => {
  test("ten cookie requests at once in the refresh window: one UPDATE, one Set-Cookie", async () => {
    const { token, id, updatesBefore } = await sessionDueForRefresh();
    const responses = await burst(10, { cookie: `sahary_session=${token}` });
    expect(responses.map((r) => r.status)).toEqual(Array(10).fill(200));
    const cookies = responses.flatMap((r) => r.headers.getSetCookie());
    expect(cookies).toHaveLength(1);
    expect(cookies[0]).toStartWith(`sahary_session=${token};`);
    const maxAge = Number(/Max-Age=(\d+)/.exec(cookies[0]!)![1]);
    expect(maxAge).toBeLessThanOrEqual(7 * 86_400);
    expect(maxAge).toBeGreaterThan(7 * 86_400 - 120);
    expect((await updatesOf(id)) - updatesBefore).toBe(1);
    const [row] = await one.services.db.select().from(sessions).where(eq(sessions.id, id));
    expect(row!.expiresAt.getTime()).toBeGreaterThan(Date.now() + 6 * 86_400_000);

    // Refreshed: the next burst writes nothing and sends no cookie.
    const again = await burst(10, { cookie: `sahary_session=${token}` });
    expect(again.flatMap((r) => r.headers.getSetCookie())).toHaveLength(0);
    expect((await updatesOf(id)) - updatesBefore).toBe(1);
  });

  test("ten bearer requests at once in the refresh window: one UPDATE", async () => {
    const { token, id, updatesBefore } = await sessionDueForRefresh();
    const responses = await burst(10, { authorization: `Bearer ${token}` });
    expect(responses.map((r) => r.status)).toEqual(Array(10).fill(200));
    expect(responses.flatMap((r) => r.headers.getSetCookie())).toHaveLength(0);
    expect((await updatesOf(id)) - updatesBefore).toBe(1);
  });

  test("a refresh never carries a session past its absolute lifetime", async () => {
    const { token } = await createUserWithSession(one.services);
    const id = sessionIdOf(token);
    const absolute = new Date(Date.now() + 2 * 3_600_000);
    await one.services.db
      .update(sessions)
      .set({ expiresAt: new Date(Date.now() + 3_600_000), absoluteExpiresAt: absolute })
      .where(eq(sessions.id, id));
    await one.services.changes.settle();
    const [response] = await burst(1, { cookie: `sahary_session=${token}` });
    const cookie = response!.headers.getSetCookie()[0]!;
    const maxAge = Number(/Max-Age=(\d+)/.exec(cookie)![1]);
    expect(maxAge).toBeLessThanOrEqual(2 * 3600);
    expect(maxAge).toBeGreaterThan(2 * 3600 - 120);
    const [row] = await one.services.db.select().from(sessions).where(eq(sessions.id, id));
    expect(row!.expiresAt.getTime()).toBe(absolute.getTime());
  });
});
