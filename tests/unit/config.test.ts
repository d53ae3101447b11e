import { describe, expect, test } from "bun:test";
import { ConfigError, loadConfig } from "../../server/config";

describe("configuration", () => {
  test("has working development defaults with nothing set", () => {
    const config = loadConfig({});
    expect(config.env).toBe("development");
    expect(config.port).toBe(3000);
    expect(config.database.url).toBeUndefined();
    expect(config.database.dataDir).toBe("./data");
    expect(config.redis.url).toBe("redis://127.0.0.1:6379");
    expect(config.http.bodyLimitBytes).toBe(1024 * 1024);
  });

  test("metrics: no token and a 5 s cache by default; a token must be long and without spaces", () => {
    expect(loadConfig({}).metrics).toEqual({ token: undefined, cacheMs: 5000 });
    expect(loadConfig({ METRICS_TOKEN: " scrape-token-0123456789 ", METRICS_CACHE_MS: "0" }).metrics).toEqual({ token: "scrape-token-0123456789", cacheMs: 0 });
    expect(() => loadConfig({ METRICS_TOKEN: "short" })).toThrow(/METRICS_TOKEN must be at least 16 characters/);
    expect(() => loadConfig({ METRICS_TOKEN: "has a space in the middle" })).toThrow(/METRICS_TOKEN must not contain spaces/);
    expect(() => loadConfig({ METRICS_CACHE_MS: "-1" })).toThrow(/METRICS_CACHE_MS/);
  });

  test("treats empty variables as unset", () => {
    expect(loadConfig({ DATABASE_URL: "", PORT: "" }).port).toBe(3000);
  });

  test("names the variable that is invalid", () => {
    expect(() => loadConfig({ PORT: "eighty" })).toThrow(/PORT/);
    expect(() => loadConfig({ LOG_LEVEL: "loud" })).toThrow(/LOG_LEVEL/);
    expect(() => loadConfig({ DATABASE_URL: "not a url" })).toThrow(/DATABASE_URL/);
  });

  test("production refuses to start without a secret, naming it", () => {
    expect(() => loadConfig({ NODE_ENV: "production" })).toThrow(ConfigError);
    expect(() => loadConfig({ NODE_ENV: "production" })).toThrow(/APP_SECRET is required/);
  });

  test("production refuses a weak secret", () => {
    expect(() => loadConfig({ NODE_ENV: "production", APP_SECRET: "short" })).toThrow(/APP_SECRET is too weak/);
    expect(() => loadConfig({ NODE_ENV: "production", APP_SECRET: "a".repeat(40) })).toThrow(/APP_SECRET is too weak/);
  });

  const STRIPE = { STRIPE_SECRET_KEY: "sk_live_51Hx9f8Kq2LmZx7Vb1Nc4Rt6Yh3Jw5Pd0Gs8Ue2Ia7", STRIPE_WEBHOOK_SECRET: "whsec_9f8Kq2LmZx7Vb1Nc4Rt6Yh3Jw5Pd0Gs8" };

  test("production accepts a strong secret", () => {
    const config = loadConfig({ NODE_ENV: "production", APP_SECRET: "9f8Kq2LmZx7Vb1Nc4Rt6Yh3Jw5Pd0Gs8Ue2Ia7", INGRESS_DOMAIN: "apps.sahary.cloud", ...STRIPE });
    expect(config.production).toBe(true);
  });

  test("production requires the Stripe keys, naming each, and trims the webhook secret", () => {
    const base = { NODE_ENV: "production", APP_SECRET: "9f8Kq2LmZx7Vb1Nc4Rt6Yh3Jw5Pd0Gs8Ue2Ia7", INGRESS_DOMAIN: "apps.sahary.cloud" };
    expect(() => loadConfig({ ...base, STRIPE_WEBHOOK_SECRET: STRIPE.STRIPE_WEBHOOK_SECRET })).toThrow(/STRIPE_SECRET_KEY is required/);
    expect(() => loadConfig({ ...base, STRIPE_SECRET_KEY: STRIPE.STRIPE_SECRET_KEY })).toThrow(/STRIPE_WEBHOOK_SECRET is required/);
    expect(() => loadConfig({ ...base, ...STRIPE, STRIPE_WEBHOOK_SECRET: "not-a-secret" })).toThrow(/STRIPE_WEBHOOK_SECRET does not look like/);
    const config = loadConfig({ ...base, ...STRIPE, STRIPE_WEBHOOK_SECRET: ` ${STRIPE.STRIPE_WEBHOOK_SECRET}\n` });
    expect(config.stripe.webhookSecret).toBe(STRIPE.STRIPE_WEBHOOK_SECRET);
    expect(config.stripe.apiBase).toBeUndefined();
  });

  test("billing settings are validated and have defaults", () => {
    const config = loadConfig({});
    expect(config.billing).toMatchObject({ currency: "USD", taxRateBps: 0, interruptibleDiscountPercent: 40, meteringIntervalMs: 60_000 });
    expect(loadConfig({ BILLING_TAX_RATE_PERCENT: "7.25" }).billing.taxRateBps).toBe(725);
    expect(() => loadConfig({ BILLING_TAX_RATE_PERCENT: "7.255" })).toThrow(/BILLING_TAX_RATE_PERCENT/);
    expect(() => loadConfig({ BILLING_TAX_RATE_PERCENT: "120" })).toThrow(/BILLING_TAX_RATE_PERCENT/);
    expect(() => loadConfig({ BILLING_CURRENCY: "usd" })).toThrow(/BILLING_CURRENCY/);
    expect(() => loadConfig({ BILLING_INTERRUPTIBLE_DISCOUNT_PERCENT: "12.5" })).toThrow(/BILLING_INTERRUPTIBLE_DISCOUNT_PERCENT/);
    expect(() => loadConfig({ STRIPE_API_BASE: "http://127.0.0.1:1234/v1/x" })).toThrow(/STRIPE_API_BASE/);
  });
});
