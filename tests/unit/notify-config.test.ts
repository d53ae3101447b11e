import { describe, expect, test } from "bun:test";
import { loadConfig } from "../../server/config";

describe("notification and webhook settings", () => {
  test("defaults: a Svix-like schedule of 8 attempts over more than a day, 15 s timeouts, private targets refused", () => {
    const config = loadConfig({});
    expect(config.webhooks.retryScheduleMs).toEqual([5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000]);
    expect(config.webhooks.retryScheduleMs.reduce((a, b) => a + b)).toBeGreaterThan(24 * 3_600_000);
    expect(config.webhooks).toMatchObject({ timeoutMs: 15_000, allowPrivateTargets: false, denyAddresses: [], disableAfterMs: 120 * 3_600_000, disableMinFailures: 10, secretGraceMs: 24 * 3_600_000 });
    expect(config.notify).toEqual({ pollMs: 1000, sweepIntervalMs: 60_000, concurrency: 16 });
    expect(config.dunning).toEqual({ reminderDays: [3, 10, 20], blockAfterDays: 30, checkIntervalMs: 3_600_000 });
  });

  test("durations take ms, s, m, h and d", () => {
    expect(loadConfig({ WEBHOOK_RETRY_SCHEDULE: "250ms, 2s,1m,1h,1d" }).webhooks.retryScheduleMs).toEqual([250, 2000, 60_000, 3_600_000, 86_400_000]);
  });

  test.each([
    ["WEBHOOK_RETRY_SCHEDULE", "5 seconds", /WEBHOOK_RETRY_SCHEDULE must be durations/],
    ["WEBHOOK_RETRY_SCHEDULE", "0s", /above zero/],
    ["WEBHOOK_TIMEOUT_MS", "30000", /WEBHOOK_TIMEOUT_MS must be at most 20000/],
    ["WEBHOOK_DENY_ADDRESSES", "10.0.0.0/8,example.com", /WEBHOOK_DENY_ADDRESSES must be IP addresses or CIDR ranges/],
    ["WEBHOOK_ALLOW_PRIVATE_TARGETS", "yes", /must be true or false/],
    ["DUNNING_REMINDER_DAYS", "10,3", /DUNNING_REMINDER_DAYS must be in increasing order/],
    ["DUNNING_REMINDER_DAYS", "3,40", /must all come before DUNNING_BLOCK_AFTER_DAYS/],
  ])("%s=%s is refused, naming the variable", (name, value, message) => {
    expect(() => loadConfig({ [name]: value })).toThrow(message);
  });

  test("DUNNING_BLOCK_AFTER_DAYS=0 never refuses new instances, so reminders may come at any time", () => {
    expect(loadConfig({ DUNNING_BLOCK_AFTER_DAYS: "0", DUNNING_REMINDER_DAYS: "30,60" }).dunning).toMatchObject({ blockAfterDays: 0, reminderDays: [30, 60] });
  });
});
