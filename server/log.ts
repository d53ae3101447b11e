import { hostname } from "node:os";
import pino from "pino";

/**
 * Structured JSON logs on pino, one object per line on stdout:
 * `{"level":"info","time":"…","pid":…,"hostname":"…","service":"sahary","msg":"…",…fields}`.
 * Callers see only this small interface, so the library stays replaceable.
 */
export type LogLevel = "debug" | "info" | "warn" | "error";
export type LogFields = Record<string, unknown>;
export type LogSink = (line: string) => void;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

/**
 * Keys every line carries, owned by the logger. A field of the same name
 * (a power `level`, an event `time`) is written as `_level`, `_time`…, so
 * filtering by level or time never misfiles a line.
 */
export const RESERVED_LOG_KEYS = ["level", "time", "msg", "pid", "hostname", "service"] as const;
const RESERVED = new Set<string>(RESERVED_LOG_KEYS);

export const REDACTED = "[redacted]";

/**
 * Field names whose values are credentials, compared lower-cased without
 * `-`/`_`: exact names, and names ending in one of the suffixes (`resetToken`,
 * `clientSecret`, `newPassword`). `tokenExpiresAt` or `keyCount` stay visible.
 */
const SECRET_NAMES = new Set([
  "authorization",
  "proxyauthorization",
  "cookie",
  "setcookie",
  "password",
  "passwd",
  "secret",
  "token",
  "apikey",
  "key",
  "credentials",
  "privatekey",
  "signature",
  "stripesignature",
]);
const SECRET_SUFFIXES = ["password", "secret", "token", "apikey", "privatekey", "signature", "cookie"];
const MAX_DEPTH = 8;

function isSecretKey(key: string): boolean {
  const k = key.toLowerCase().replace(/[-_]/g, "");
  return SECRET_NAMES.has(k) || SECRET_SUFFIXES.some((suffix) => k.endsWith(suffix));
}

/** Credentials inside free text: `scheme://user:password@host` and `Bearer <token>`. */
function redactText(text: string): string {
  return text.replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^:/?#@\s]*:)[^@/?#\s]+@/gi, `$1${REDACTED}@`).replace(/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+/g, `$1 ${REDACTED}`);
}

function redact(value: unknown, depth: number): unknown {
  if (typeof value === "string") return redactText(value);
  if (value instanceof Error) return redact(serializeError(value), depth);
  if (value === null || typeof value !== "object" || depth >= MAX_DEPTH) return value;
  if (value instanceof Date) return value;
  if (Array.isArray(value)) return value.map((item) => redact(item, depth + 1));
  if (value instanceof Headers) return redact(Object.fromEntries(value.entries()), depth);
  const out: LogFields = {};
  for (const [key, item] of Object.entries(value)) out[key] = isSecretKey(key) && item !== null && item !== undefined ? REDACTED : redact(item, depth + 1);
  return out;
}

/** A line's fields: secrets redacted, reserved keys moved aside. */
export function safeFields(fields: LogFields | undefined): LogFields {
  const out: LogFields = {};
  if (!fields) return out;
  for (const [key, value] of Object.entries(fields)) {
    let name = key;
    while (RESERVED.has(name) || name in out) name = `_${name}`;
    out[name] = isSecretKey(key) && value !== null && value !== undefined ? REDACTED : redact(value, 1);
  }
  return out;
}

export function createLogger(opts: { level: LogLevel; base?: LogFields; sink?: LogSink }): Logger {
  // The identity fields may be set by the process (boot names its service); everything else is an ordinary field.
  const { service, pid, hostname: host, ...rest } = opts.base ?? {};
  const sink = opts.sink;
  // Synchronous writes: a process that logs and then exits (start-up failure) must not lose the line.
  const destination = sink ? { write: (line: string) => sink(line.endsWith("\n") ? line.slice(0, -1) : line) } : pino.destination({ fd: 1, sync: true });
  const root = pino(
    {
      level: opts.level,
      messageKey: "msg",
      base: { pid: typeof pid === "number" ? pid : process.pid, hostname: typeof host === "string" ? host : hostname(), service: typeof service === "string" ? service : "sahary" },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
  return wrap(Object.keys(rest).length ? root.child(safeFields(rest)) : root);
}

function wrap(logger: pino.Logger): Logger {
  // Fields are redacted only for a line that will be written: a request line below the level costs nothing.
  const at = (level: "debug" | "info" | "warn" | "error") => (msg: string, fields?: LogFields) => {
    if (logger.isLevelEnabled(level)) logger[level](safeFields(fields), msg);
  };
  return {
    debug: at("debug"),
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
    child: (fields) => wrap(logger.child(safeFields(fields))),
  };
}

/** Errors keep their stack in the logs (never in responses). */
export function serializeError(error: unknown): LogFields {
  if (!(error instanceof Error)) return { message: String(error) };
  const out: LogFields = { name: error.name, message: error.message, stack: error.stack };
  const code = (error as { code?: unknown }).code;
  if (code !== undefined) out.code = code;
  if (error.cause !== undefined) out.cause = serializeError(error.cause);
  return out;
}
