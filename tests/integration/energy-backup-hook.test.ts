import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHmac } from "node:crypto";
import { backupSignalFor, BackupHookError, invokeBackupHook } from "../../server/energy/backup-hook";

type Received = { headers: Headers; body: string };
let received: Received[] = [];
let status = 204;
let server: ReturnType<typeof Bun.serve>;
let url: string;

beforeAll(() => {
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      received.push({ headers: req.headers, body: await req.text() });
      return new Response(null, { status });
    },
  });
  url = `http://127.0.0.1:${server.port}/backup`;
});
afterAll(() => server.stop(true));

const call = { signal: "switch-to-backup", changeId: crypto.randomUUID(), from: "conserve", to: "critical", at: new Date().toISOString(), soc: 28.5 } as const;

describe("switch-to-backup signalling", () => {
  test("signals only when a change crosses the backup level", () => {
    expect(backupSignalFor("conserve", "critical", "critical")).toBe("switch-to-backup");
    expect(backupSignalFor("normal", "shutdown", "critical")).toBe("switch-to-backup");
    expect(backupSignalFor("critical", "shutdown", "critical")).toBeNull();
    expect(backupSignalFor("shutdown", "critical", "critical")).toBeNull();
    expect(backupSignalFor("critical", "conserve", "critical")).toBe("switch-to-solar");
    expect(backupSignalFor("normal", "conserve", "critical")).toBeNull();
    expect(backupSignalFor("normal", "conserve", "conserve")).toBe("switch-to-backup");
  });

  test("POSTs the signal as JSON, signed with the shared secret and keyed by the change", async () => {
    received = [];
    status = 204;
    const result = await invokeBackupHook({ url, secret: "s3cret", level: "critical", timeoutMs: 2000 }, call);
    expect(result).toEqual({ status: 204 });
    expect(received).toHaveLength(1);
    const { headers, body } = received[0]!;
    expect(JSON.parse(body)).toEqual({ event: "power.backup", ...call });
    expect(headers.get("content-type")).toBe("application/json");
    expect(headers.get("idempotency-key")).toBe(call.changeId);
    expect(headers.get("x-sahary-signature")).toBe(`sha256=${createHmac("sha256", "s3cret").update(body).digest("hex")}`);
  });

  test("without a secret the body goes unsigned", async () => {
    received = [];
    await invokeBackupHook({ url, secret: undefined, level: "critical", timeoutMs: 2000 }, call);
    expect(received[0]!.headers.get("x-sahary-signature")).toBeNull();
  });

  test("a failing hook rejects so the emergency job retries", async () => {
    status = 503;
    await expect(invokeBackupHook({ url, secret: undefined, level: "critical", timeoutMs: 2000 }, call)).rejects.toBeInstanceOf(BackupHookError);
    status = 204;
    const closed = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response() });
    const deadUrl = `http://127.0.0.1:${closed.port}/`;
    await closed.stop(true);
    await expect(invokeBackupHook({ url: deadUrl, secret: undefined, level: "critical", timeoutMs: 2000 }, call)).rejects.toThrow("backup hook unreachable");
  });

  test("no hook configured: nothing is sent", async () => {
    received = [];
    expect(await invokeBackupHook({ url: undefined, secret: undefined, level: "critical", timeoutMs: 2000 }, call)).toBeNull();
    expect(received).toHaveLength(0);
  });
});
