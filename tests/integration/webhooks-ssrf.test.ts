import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { and, eq } from "drizzle-orm";
import { eventDeliveries, webhookAttempts, webhookEndpoints } from "../../db/schema";
import { recordEvent } from "../../server/events/outbox";
import { generateSecret, sealSecret } from "../../server/webhooks/secrets";
import { sendWebhook } from "../../server/webhooks/send";
import { checkUrlShape, resolveTarget, targetPolicy } from "../../server/webhooks/targets";
import { notifyProcessor } from "../../workers/notify";
import { testConfig, testRun } from "../harness/env";
import { expectAppError } from "../harness/expect";
import { startWebhookReceiver, type WebhookReceiver } from "../harness/receiver";
import { eventually, startTestServer, type TestServer } from "../harness/server";
import { createUserWithSession } from "../harness/users";

// SSRF: with the default configuration a webhook can only go to a public
// address, checked when the URL is saved and again at every attempt.

let app: TestServer;
let receiver: WebhookReceiver;

beforeAll(async () => {
  receiver = await startWebhookReceiver();
  app = await startTestServer({ env: { NOTIFY_POLL_MS: "100", WEBHOOK_RETRY_SCHEDULE: "100ms" }, workers: [notifyProcessor] });
  expect(app.services.config.webhooks.allowPrivateTargets).toBe(false);
});
afterAll(async () => {
  await app.close();
  await receiver.close();
});

describe("on save", () => {
  test("loopback, link-local (metadata), private, unspecified and mapped addresses, names resolving to them, credentials and other schemes are refused with WEBHOOK_URL_REFUSED", async () => {
    const { token } = await createUserWithSession(app.services);
    const api = app.client({ token });
    const refused: Array<[string, RegExp]> = [
      ["http://127.0.0.1/hooks", /loopback/],
      [`http://127.0.0.1:${receiver.port}/hooks`, /loopback/],
      ["http://169.254.169.254/latest/meta-data/", /linkLocal/],
      ["http://10.0.0.5/hooks", /private/],
      ["http://192.168.1.10/hooks", /private/],
      ["http://172.16.0.1/hooks", /private/],
      ["http://100.64.0.1/hooks", /carrierGradeNat/],
      ["http://0.0.0.0/hooks", /unspecified/],
      ["http://[::1]/hooks", /loopback/],
      ["http://[::ffff:127.0.0.1]/hooks", /loopback/],
      ["http://[fd00::1]/hooks", /uniqueLocal/],
      // Other spellings of 127.0.0.1 that URL parsing normalises.
      ["http://0x7f000001/hooks", /loopback/],
      ["http://2130706433/hooks", /loopback/],
      // A name that resolves to loopback.
      [`http://localhost:${receiver.port}/hooks`, /localhost resolves to 127\.0\.0\.1 is a loopback address/],
      ["https://user:secret@hooks.example.test/", /user name or password/],
      ["ftp://hooks.example.test/", /only http and https/],
    ];
    for (const [url, reason] of refused) {
      const error = await expectAppError(api.webhooks.endpoints.create.mutate({ url }), "WEBHOOK_URL_REFUSED");
      expect({ url, reason: error.data?.details?.reason }).toMatchObject({ url, reason: expect.stringMatching(reason) });
    }
    expect(await api.webhooks.endpoints.list.query()).toEqual([]);
    await expectAppError(api.webhooks.endpoints.create.mutate({ url: "not a url" }), "VALIDATION_FAILED");

    // Public addresses, and names that do not resolve yet (checked again at every attempt), are accepted.
    // (Filtered to an event this test never makes: nothing is sent off the machine.)
    const ok = await api.webhooks.endpoints.create.mutate({ url: "https://93.184.215.14/hooks", eventTypes: ["payment.refunded"] });
    const pending = await api.webhooks.endpoints.create.mutate({ url: "https://hooks.example.test/sahary", eventTypes: ["payment.refunded"] });
    expect([ok.endpoint.url, pending.endpoint.url]).toEqual(["https://93.184.215.14/hooks", "https://hooks.example.test/sahary"]);
    // Changing the URL goes through the same check.
    await expectAppError(api.webhooks.endpoints.update.mutate({ id: ok.endpoint.id, url: "http://169.254.169.254/" }), "WEBHOOK_URL_REFUSED");
    expect((await api.webhooks.endpoints.list.query()).find((e) => e.id === ok.endpoint.id)!.url).toBe("https://93.184.215.14/hooks");
    for (const e of [ok, pending]) await api.webhooks.endpoints.delete.mutate({ id: e.endpoint.id });
  });
});

describe("at every attempt", () => {
  test("a URL saved while it was allowed but now resolving to loopback is refused without a request, and the attempt records why", async () => {
    const { user } = await createUserWithSession(app.services);
    // As if the name pointed elsewhere when it was saved: the row is written past the save check.
    const targets = [`http://localhost:${receiver.port}/rebound`, `http://127.0.0.1:${receiver.port}/literal`];
    const endpoints = await app.services.db
      .insert(webhookEndpoints)
      .values(targets.map((url) => ({ userId: user.id, url, secretSealed: sealSecret(app.services.config.secret, generateSecret()) })))
      .returning();
    const eventId = await recordEvent(app.services.db, {
      type: "instance.state_changed",
      userId: user.id,
      data: { instanceId: crypto.randomUUID(), name: "web", from: "provisioning", to: "running", reason: "requested" },
    });
    const deliveries = await eventually(
      () => app.services.db.select().from(eventDeliveries).where(eq(eventDeliveries.eventId, eventId)),
      (rows) => rows.length === 2 && rows.every((r) => r.status === "failed"),
      { what: "both deliveries to give up", timeoutMs: 20_000 },
    );
    for (const delivery of deliveries) {
      const attempts = await app.services.db.select().from(webhookAttempts).where(eq(webhookAttempts.deliveryId, delivery.id));
      expect(attempts).toHaveLength(2);
      expect(attempts.every((a) => a.outcome === "failed" && a.statusCode === null && a.address === null)).toBe(true);
      const url = endpoints.find((e) => e.id === delivery.endpointId)!.url;
      expect(attempts[0]!.error).toMatch(url.includes("localhost") ? /^refused: localhost resolves to 127\.0\.0\.1 is a loopback address/ : /^refused: 127\.0\.0\.1 is a loopback address/);
    }
    expect(receiver.received).toEqual([]);
    await app.services.db.delete(webhookEndpoints).where(and(eq(webhookEndpoints.userId, user.id)));
  });

  test("the deny list and this host's own public addresses are refused even when private targets are allowed", async () => {
    const policy = targetPolicy(testConfig({ WEBHOOK_ALLOW_PRIVATE_TARGETS: "true", WEBHOOK_DENY_ADDRESSES: "127.0.0.0/8,203.0.113.7" }));
    await expect(resolveTarget(new URL("http://127.0.0.2/x"), policy)).rejects.toThrow("127.0.0.2 is on the platform's deny list");
    await expect(resolveTarget(new URL("http://203.0.113.7/x"), policy)).rejects.toThrow("deny list");
    await expect(resolveTarget(new URL("http://10.1.2.3/x"), policy)).resolves.toMatchObject({ address: "10.1.2.3" });
    // Where customers' containers publish their ports: the host's own public address.
    const own = { ...policy, own: new Set(["93.184.215.14"]) };
    await expect(resolveTarget(new URL("http://93.184.215.14:8080/x"), own)).rejects.toThrow("93.184.215.14 is this platform's own address");
  });
});

describe("pinning the checked address", () => {
  test("the request goes to the checked address while Host and the TLS certificate check keep the name", async () => {
    const dir = join(testRun.dataDir, "tls");
    mkdirSync(dir, { recursive: true });
    const [cert, key] = [join(dir, "cert.pem"), join(dir, "key.pem")];
    const made = Bun.spawnSync(
      ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=hooks.example.test", "-addext", "subjectAltName=DNS:hooks.example.test"],
      { stderr: "pipe" },
    );
    expect(made.exitCode).toBe(0);
    const pem = await Bun.file(cert).text();
    const tlsReceiver = await startWebhookReceiver({ tls: { cert: pem, key: await Bun.file(key).text() } });
    try {
      const policy = targetPolicy(testConfig({ WEBHOOK_ALLOW_PRIVATE_TARGETS: "true" }));
      // A resolver that answers like a DNS server under the attacker's control would.
      const pinned = await resolveTarget(checkUrlShape(`https://hooks.example.test:${tlsReceiver.port}/tls?x=1`, policy), policy, async () => [{ address: "127.0.0.1", family: 4 }]);
      const sent = await sendWebhook(pinned, { headers: { "webhook-id": "msg_1" }, body: "{}" }, { timeoutMs: 5000, tls: { ca: pem } });
      expect(sent).toMatchObject({ statusCode: 204, error: null });
      expect(tlsReceiver.at("/tls")[0]!.headers).toMatchObject({ host: `hooks.example.test:${tlsReceiver.port}`, "webhook-id": "msg_1" });

      // The certificate is checked against the name, not the address: another name is refused.
      const wrongName = await resolveTarget(checkUrlShape(`https://other.example.test:${tlsReceiver.port}/tls`, policy), policy, async () => [{ address: "127.0.0.1", family: 4 }]);
      const refused = await sendWebhook(wrongName, { headers: {}, body: "{}" }, { timeoutMs: 5000, tls: { ca: pem } });
      expect(refused.statusCode).toBeNull();
      expect(refused.error).toMatch(/CERT|certificate|altname/i);
      expect(tlsReceiver.at("/tls")).toHaveLength(1);
    } finally {
      await tlsReceiver.close();
    }
  });

  test("a name whose addresses are not all allowed is refused, whichever comes first", async () => {
    const policy = targetPolicy(testConfig());
    const mixed = async () => [
      { address: "93.184.215.14", family: 4 },
      { address: "10.0.0.7", family: 4 },
    ];
    await expect(resolveTarget(new URL("https://hooks.example.test/"), policy, mixed)).rejects.toThrow("hooks.example.test resolves to 10.0.0.7 is a private address");
  });
});
