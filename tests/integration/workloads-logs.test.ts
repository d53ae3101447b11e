import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createTRPCClient, httpSubscriptionLink, type TRPCClientError } from "@trpc/client";
import { EventSource } from "eventsource";
import { syncHosts } from "../../server/compute/hosts";
import { openLogFollows } from "../../server/compute/logs";
import type { AppRouter } from "../../server/router";
import { actionDone, retireInstancesSince } from "../harness/compute";
import { eventually, startTestServer, type TestServer } from "../harness/server";
import { createUserWithSession } from "../harness/users";

// Live logs over Server-Sent Events, through the real tRPC client's
// httpSubscriptionLink (an EventSource that sends the bearer token), against
// a container that writes a line every 200 ms.

let app: TestServer;
let token: string;
let instanceId: string;

const started = new Date();

beforeAll(async () => {
  app = await startTestServer({ workers: true, env: { LOGS_FOLLOW_MAX_SECONDS: "20" } });
  await syncHosts(app.services);
  token = (await createUserWithSession(app.services)).token;
  const api = app.client({ token });
  const created = await api.compute.instances.create.mutate({
    name: "chatty",
    planId: "nano",
    imageId: "busybox",
    command: ["/bin/sh", "-c", "i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.2; done"],
  });
  expect((await actionDone(api, created.actionId)).status).toBe("succeeded");
  instanceId = created.instance.id;
});
afterAll(async () => {
  await retireInstancesSince(app.services, started);
  await app.close();
});

/** A typed client whose subscriptions go over SSE with `authorization` sent on the EventSource's requests. */
function sseClient(bearer: string | null) {
  return createTRPCClient<AppRouter>({
    links: [
      httpSubscriptionLink({
        url: `${app.url}/trpc`,
        EventSource,
        eventSourceOptions: () => ({
          fetch: (input, init) => fetch(input, { ...init, headers: { ...(init?.headers as Record<string, string>), ...(bearer ? { authorization: `Bearer ${bearer}` } : {}) } }),
        }),
      }),
    ],
  });
}

type Line = { stream: string; at: string | null; message: string };

function follow(bearer: string | null, input: { id: string; tail?: number; maxLines?: number }) {
  const lines: Line[] = [];
  let error: TRPCClientError<AppRouter> | null = null;
  let completed = false;
  const subscription = sseClient(bearer).compute.instances.logsFollow.subscribe(input, {
    onData: (line) => lines.push(line as Line),
    onError: (e) => (error = e as TRPCClientError<AppRouter>),
    onComplete: () => (completed = true),
  });
  return { lines, subscription, error: () => error, completed: () => completed };
}

describe("compute.instances.logsFollow", () => {
  test("streams new lines as the container writes them, in order", async () => {
    const followed = follow(token, { id: instanceId });
    await eventually(
      async () => followed.lines.length,
      (n) => n >= 5,
      { timeoutMs: 20_000, what: "five lines" },
    );
    followed.subscription.unsubscribe();
    const numbers = followed.lines.map((l) => Number(/^tick-(\d+)$/.exec(l.message)?.[1]));
    for (let i = 1; i < numbers.length; i++) expect(numbers[i]).toBe(numbers[i - 1]! + 1);
    expect(followed.lines[0]).toMatchObject({ stream: "stdout" });
    expect(Date.parse(followed.lines[0]!.at!)).toBeGreaterThan(Date.now() - 60_000);
  });

  test("ends by itself after maxLines, and the engine's stream is closed", async () => {
    const followed = follow(token, { id: instanceId, tail: 3, maxLines: 4 });
    await eventually(async () => followed.completed(), Boolean, { timeoutMs: 20_000, what: "the subscription to end" });
    expect(followed.lines).toHaveLength(4);
    await eventually(
      async () => openLogFollows(),
      (n) => n === 0,
      { timeoutMs: 10_000, what: "no follow stream left open" },
    );
  });

  test("a client that leaves cancels the follow: no stream leaks", async () => {
    const clients = Array.from({ length: 3 }, () => follow(token, { id: instanceId }));
    await eventually(
      async () => openLogFollows(),
      (n) => n === 3,
      { timeoutMs: 20_000, what: "three open follows" },
    );
    for (const c of clients) c.subscription.unsubscribe();
    await eventually(
      async () => openLogFollows(),
      (n) => n === 0,
      { timeoutMs: 10_000, what: "every follow stream closed" },
    );
  });

  test("another user's instance is NOT_FOUND, an anonymous caller UNAUTHENTICATED", async () => {
    const stranger = follow((await createUserWithSession(app.services)).token, { id: instanceId });
    const error = await eventually(
      async () => stranger.error(),
      (e) => e !== null,
      { timeoutMs: 20_000, what: "the refusal" },
    );
    expect(error!.data?.appCode).toBe("NOT_FOUND");
    stranger.subscription.unsubscribe();
    const anonymous = follow(null, { id: instanceId });
    const refused = await eventually(
      async () => anonymous.error(),
      (e) => e !== null,
      { timeoutMs: 20_000, what: "the refusal" },
    );
    expect(refused!.data?.appCode).toBe("UNAUTHENTICATED");
    anonymous.subscription.unsubscribe();
    expect(openLogFollows()).toBe(0);
  });
});
