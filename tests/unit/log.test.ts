import { describe, expect, test } from "bun:test";
import { resolve } from "node:path";
import { createLogger, REDACTED, type LogLevel } from "../../server/log";

function capture(level: LogLevel = "debug", base?: Record<string, unknown>) {
  const lines: string[] = [];
  const log = createLogger({ level, base, sink: (line) => lines.push(line) });
  return { log, lines, records: () => lines.map((line) => JSON.parse(line) as Record<string, unknown>) };
}

describe("log lines", () => {
  test("are one JSON object per line with level, ISO time, msg, pid, hostname and service", () => {
    const { log, lines, records } = capture("debug", { service: "api" });
    log.info("listening", { url: "http://127.0.0.1:3000" });
    expect(lines).toHaveLength(1);
    expect(lines[0]).not.toContain("\n");
    const [record] = records();
    expect(record).toMatchObject({ level: "info", msg: "listening", service: "api", pid: process.pid, url: "http://127.0.0.1:3000" });
    expect(typeof record!.hostname).toBe("string");
    expect(new Date(record!.time as string).toISOString()).toBe(record!.time as string);
  });

  test("a field named level cannot overwrite the line's level (it is kept as _level)", () => {
    const { log, records } = capture();
    log.warn("power level changed", { level: "shutdown", from: "critical" });
    const [record] = records();
    expect(record!.level).toBe("warn");
    expect(record!._level).toBe("shutdown");
  });

  test("no reserved key can be overwritten by a field, a child binding or a base field", () => {
    const { log, lines, records } = capture("debug", { level: "fatal", msg: "base" });
    const child = log.child({ time: "yesterday", service: "evil", hostname: "elsewhere" });
    child.error("real message", { msg: "field message", pid: -1, level: "shutdown" });
    const [record] = records();
    expect(record).toMatchObject({ level: "error", msg: "real message", service: "sahary", pid: process.pid });
    expect(record!.hostname).not.toBe("elsewhere");
    expect(record!.time).not.toBe("yesterday");
    expect(record).toMatchObject({ _time: "yesterday", _service: "evil", _hostname: "elsewhere", _msg: "field message", _pid: -1, _level: "shutdown" });
    // JSON with duplicate keys would parse to the last one; the raw line must name each reserved key once.
    const raw = lines[0]!;
    for (const key of ["level", "time", "msg", "pid", "hostname", "service"]) expect(raw.split(`"${key}":`).length).toBe(2);
  });

  test("LOG_LEVEL filters lower levels", () => {
    const { log, records } = capture("warn");
    log.debug("d");
    log.info("i");
    log.warn("w");
    log.error("e");
    expect(records().map((r) => r.level)).toEqual(["warn", "error"]);
  });

  test("errors are serialised with name, message, code, stack and cause", () => {
    const { log, records } = capture();
    const error = Object.assign(new Error("outer", { cause: new Error("inner") }), { code: "ECONNRESET" });
    log.error("failed", { error });
    const logged = records()[0]!.error as Record<string, any>;
    expect(logged).toMatchObject({ name: "Error", message: "outer", code: "ECONNRESET", cause: { message: "inner" } });
    expect(logged.stack).toContain("outer");
  });
});

describe("secrets are redacted", () => {
  test("by field name, at any depth and in any case", () => {
    const { log, lines, records } = capture();
    log.info("request", {
      headers: { Authorization: "Bearer abc.def", cookie: "sahary_session=s3cr3t", "x-request-id": "r1" },
      password: "hunter2-hunter2",
      body: { newPassword: "p4ssw0rd-long", resetToken: "tok-123", apiKey: "sahary_k3y", api_key: "sahary_k3y2", stripeSecret: "sk_live_x" },
      webhook: { secret: "whsec_abc", signature: "t=1,v1=abc" },
      list: [{ token: "in-an-array" }],
      tokenExpiresAt: "2030-01-01T00:00:00.000Z",
      requestId: "r1",
    });
    const [record] = records() as Array<Record<string, any>>;
    expect(record!.headers.Authorization).toBe(REDACTED);
    expect(record!.headers.cookie).toBe(REDACTED);
    expect(record!.headers["x-request-id"]).toBe("r1");
    expect(record!.password).toBe(REDACTED);
    expect(record!.body).toEqual({ newPassword: REDACTED, resetToken: REDACTED, apiKey: REDACTED, api_key: REDACTED, stripeSecret: REDACTED });
    expect(record!.webhook).toEqual({ secret: REDACTED, signature: REDACTED });
    expect(record!.list).toEqual([{ token: REDACTED }]);
    // Names that merely contain a secret word stay readable.
    expect(record!.tokenExpiresAt).toBe("2030-01-01T00:00:00.000Z");
    for (const secret of ["abc.def", "s3cr3t", "hunter2", "p4ssw0rd", "tok-123", "sahary_k3y", "sk_live_x", "whsec_abc", "in-an-array"]) expect(lines[0]).not.toContain(secret);
  });

  test("in child bindings and inside free text (URL credentials, bearer tokens)", () => {
    const { log, lines, records } = capture();
    log.child({ token: "child-secret" }).info("connecting", { url: "postgres://sahary:pg-pass@db:5432/sahary", note: "sent Bearer abc123 upstream" });
    const [record] = records() as Array<Record<string, any>>;
    expect(record!.token).toBe(REDACTED);
    expect(record!.url).toBe(`postgres://sahary:${REDACTED}@db:5432/sahary`);
    expect(record!.note).toBe(`sent Bearer ${REDACTED} upstream`);
    for (const secret of ["child-secret", "pg-pass", "abc123"]) expect(lines[0]).not.toContain(secret);
  });
});

test("without a sink, lines go to stdout and survive an immediate exit", async () => {
  const root = resolve(import.meta.dir, "../..");
  const script = `import { createLogger } from "./server/log"; const log = createLogger({ level: "info" }); log.info("one", { level: "conserve" }); log.debug("hidden"); log.error("two"); process.exit(3);`;
  const child = Bun.spawn([process.execPath, "-e", script], { cwd: root, stdout: "pipe", stderr: "pipe" });
  const [code, out] = await Promise.all([child.exited, new Response(child.stdout).text()]);
  expect(code).toBe(3);
  const records = out
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line));
  expect(records.map((r) => [r.level, r.msg])).toEqual([
    ["info", "one"],
    ["error", "two"],
  ]);
  expect(records[0]._level).toBe("conserve");
});
