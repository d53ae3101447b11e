import { describe, expect, test } from "bun:test";
import { loadConfig } from "../../server/config";

const SECRET = "9f8Kq2LmZx7Vb1Nc4Rt6Yh3Jw5Pd0Gs8Ue2Ia7";

describe("auth configuration", () => {
  test("defaults: OWASP Argon2id baseline, 10 failures lock for 15 minutes, 1-hour reset links", () => {
    const { auth } = loadConfig({});
    expect(auth.passwordHash).toEqual({ memoryKib: 19456, timeCost: 2 });
    expect(auth.loginMaxFailures).toBe(10);
    expect(auth.lockoutMs).toBe(15 * 60_000);
    expect(auth.limits).toEqual({ loginPerIp: 100, registerPerIp: 20, resetPerIp: 20, mailPerAccount: 5 });
    expect(auth.verifyTokenTtlMs).toBe(48 * 3_600_000);
    expect(auth.resetTokenTtlMs).toBe(60 * 60_000);
  });

  test("names an invalid limit", () => {
    expect(() => loadConfig({ LOGIN_MAX_FAILURES: "0" })).toThrow(/LOGIN_MAX_FAILURES/);
    expect(() => loadConfig({ RATE_LIMIT_LOGIN_PER_IP: "lots" })).toThrow(/RATE_LIMIT_LOGIN_PER_IP/);
  });

  test("production refuses Argon2 parameters below OWASP's minimum, and accepts OWASP's trade-offs", () => {
    const production = {
      NODE_ENV: "production",
      APP_SECRET: SECRET,
      STRIPE_SECRET_KEY: "sk_live_51Hx9f8Kq2LmZx7Vb1Nc4Rt6Yh3Jw5Pd0Gs8Ue2Ia7",
      STRIPE_WEBHOOK_SECRET: "whsec_9f8Kq2LmZx7Vb1Nc4Rt6Yh3Jw5Pd0Gs8",
      INGRESS_DOMAIN: "apps.sahary.cloud",
    };
    expect(() => loadConfig({ ...production, PASSWORD_HASH_MEMORY_KIB: "4096", PASSWORD_HASH_TIME_COST: "1" })).toThrow(/PASSWORD_HASH_MEMORY_KIB/);
    expect(() => loadConfig({ ...production, PASSWORD_HASH_MEMORY_KIB: "19456", PASSWORD_HASH_TIME_COST: "1" })).toThrow(/PASSWORD_HASH_MEMORY_KIB/);
    expect(loadConfig({ ...production, PASSWORD_HASH_MEMORY_KIB: "47104", PASSWORD_HASH_TIME_COST: "1" }).auth.passwordHash.memoryKib).toBe(47104);
    expect(loadConfig({ ...production, PASSWORD_HASH_MEMORY_KIB: "12288", PASSWORD_HASH_TIME_COST: "3" }).auth.passwordHash.timeCost).toBe(3);
    // Development and tests may go lower (fast test suites).
    expect(loadConfig({ PASSWORD_HASH_MEMORY_KIB: "4096", PASSWORD_HASH_TIME_COST: "1" }).auth.passwordHash.memoryKib).toBe(4096);
  });
});
