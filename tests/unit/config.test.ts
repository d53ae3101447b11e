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

  test("production accepts a strong secret", () => {
    const config = loadConfig({ NODE_ENV: "production", APP_SECRET: "9f8Kq2LmZx7Vb1Nc4Rt6Yh3Jw5Pd0Gs8Ue2Ia7" });
    expect(config.production).toBe(true);
  });
});
