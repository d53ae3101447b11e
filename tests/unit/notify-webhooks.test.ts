import { describe, expect, test } from "bun:test";
import { Webhook } from "standardwebhooks";
import { loadConfig } from "../../server/config";
import { generateSecret, openSecret, sealSecret, signatureHeader } from "../../server/webhooks/secrets";
import { parseRetryAfter } from "../../server/webhooks/send";
import { checkUrlShape, refusedAddress, resolveTarget, TargetUnresolvable, targetPolicy, validateTargetUrl, type TargetPolicy } from "../../server/webhooks/targets";

const policy: TargetPolicy = { requireHttps: false, allowPrivate: false, deny: [], own: new Set() };

describe("secrets", () => {
  test("a secret is whsec_ and 32 random bytes in base64; sealed, it opens only with the same APP_SECRET and untampered", () => {
    const secret = generateSecret();
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(Buffer.from(secret.slice(6), "base64")).toHaveLength(32);
    expect(generateSecret()).not.toBe(secret);
    const sealed = sealSecret("app-secret-one-that-is-long-enough-000", secret);
    expect(sealed).not.toContain(secret.slice(6));
    expect(openSecret("app-secret-one-that-is-long-enough-000", sealed)).toBe(secret);
    expect(() => openSecret("app-secret-two-that-is-long-enough-000", sealed)).toThrow();
    const [v, iv, tag, body] = sealed.split(".");
    const flipped = Buffer.from(body!, "base64url");
    flipped[0]! ^= 1;
    expect(() => openSecret("app-secret-one-that-is-long-enough-000", [v, iv, tag, flipped.toString("base64url")].join("."))).toThrow();
  });

  test("the signature header carries one v1 signature per secret, each verifiable on its own", () => {
    const [current, previous] = [generateSecret(), generateSecret()];
    const at = new Date();
    const body = JSON.stringify({ type: "invoice.issued", data: { n: 1 } });
    const header = signatureHeader([current, previous], "evt_1", at, body);
    expect(header).toMatch(/^v1,\S+ v1,\S+$/);
    const headers = { "webhook-id": "evt_1", "webhook-timestamp": String(Math.floor(at.getTime() / 1000)), "webhook-signature": header };
    expect(new Webhook(current).verify(body, headers)).toEqual({ type: "invoice.issued", data: { n: 1 } });
    expect(new Webhook(previous).verify(body, headers)).toBeDefined();
    expect(() => new Webhook(generateSecret()).verify(body, headers)).toThrow("No matching signature found");
    expect(() => new Webhook(current).verify(body, { ...headers, "webhook-id": "evt_2" })).toThrow();
  });
});

describe("targets", () => {
  test("only public unicast addresses pass by default", () => {
    for (const address of [
      "127.0.0.1",
      "127.8.9.10",
      "10.0.0.1",
      "172.31.255.255",
      "192.168.0.1",
      "169.254.169.254",
      "100.64.0.1",
      "0.0.0.0",
      "255.255.255.255",
      "224.0.0.1",
      "::1",
      "::",
      "fe80::1",
      "fc00::1",
      "::ffff:10.0.0.1",
      "64:ff9b::a00:1",
      "2002:a00:1::",
      "2001::1",
    ]) {
      expect({ address, refused: refusedAddress(address, policy) !== null }).toEqual({ address, refused: true });
    }
    for (const address of ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"]) expect(refusedAddress(address, policy)).toBeNull();
    expect(refusedAddress("127.0.0.1", { ...policy, allowPrivate: true })).toBeNull();
    expect(refusedAddress("not-an-ip", policy)).toContain("not an IP address");
  });

  test("URL shape: http(s) only, https only when required, no credentials", () => {
    expect(checkUrlShape("http://hooks.example.test/x", policy).hostname).toBe("hooks.example.test");
    expect(() => checkUrlShape("http://hooks.example.test/x", { ...policy, requireHttps: true })).toThrow("only https");
    expect(() => checkUrlShape("https://a:b@hooks.example.test/", policy)).toThrow("user name or password");
    expect(() => checkUrlShape("file:///etc/passwd", policy)).toThrow("only http and https");
    expect(() => checkUrlShape("::", policy)).toThrow("not a valid URL");
  });

  test("a name that does not resolve is refused at an attempt but accepted on save", async () => {
    const nowhere = async () => {
      throw Object.assign(new Error("not found"), { code: "ENOTFOUND" });
    };
    await expect(resolveTarget(new URL("https://hooks.example.test/"), policy, nowhere)).rejects.toBeInstanceOf(TargetUnresolvable);
    await expect(validateTargetUrl("https://hooks.example.test/", policy, nowhere)).resolves.toBe("https://hooks.example.test/");
    await expect(validateTargetUrl("https://hooks.example.test/", policy, async () => [{ address: "10.9.9.9", family: 4 }])).rejects.toMatchObject({ appCode: "WEBHOOK_URL_REFUSED" });
    await expect(resolveTarget(new URL("http://[2606:4700:4700::1111]:8443/x"), policy)).resolves.toMatchObject({ address: "2606:4700:4700::1111", family: 6 });
  });

  test("the policy follows the configuration: https in production, the deny list, private targets on request", () => {
    const production = targetPolicy(
      loadConfig({ NODE_ENV: "production", APP_SECRET: "k3Y8-p0W!zQ2rT6uV9xA1bC4dE7fG0hJ", STRIPE_SECRET_KEY: "sk_live_x", STRIPE_WEBHOOK_SECRET: "whsec_x", INGRESS_DOMAIN: "apps.sahary.cloud" }),
    );
    expect(production).toMatchObject({ requireHttps: true, allowPrivate: false });
    const dev = targetPolicy(loadConfig({ WEBHOOK_ALLOW_PRIVATE_TARGETS: "true", WEBHOOK_DENY_ADDRESSES: "10.0.0.0/8, 192.0.2.1" }));
    expect(dev.requireHttps).toBe(false);
    expect(refusedAddress("10.1.1.1", dev)).toContain("deny list");
    expect(refusedAddress("192.0.2.1", dev)).toContain("deny list");
    expect(refusedAddress("127.0.0.1", dev)).toBeNull();
  });
});

describe("Retry-After", () => {
  test("seconds or an HTTP date, in milliseconds from now; anything else is ignored", () => {
    const now = Date.parse("2026-01-01T00:00:00Z");
    expect(parseRetryAfter("120", now)).toBe(120_000);
    expect(parseRetryAfter("Thu, 01 Jan 2026 00:00:30 GMT", now)).toBe(30_000);
    expect(parseRetryAfter("Wed, 31 Dec 2025 00:00:00 GMT", now)).toBe(0);
    expect(parseRetryAfter("soon", now)).toBeNull();
    expect(parseRetryAfter(null, now)).toBeNull();
  });
});
