/**
 * Structured JSON logs, one object per line. Small on purpose: the fields we
 * need (level, time, msg, request id, error) without a dependency.
 */
export type LogLevel = "debug" | "info" | "warn" | "error";
export type LogFields = Record<string, unknown>;
export type LogSink = (line: string) => void;

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

const stdoutSink: LogSink = (line) => process.stdout.write(line + "\n");

export function createLogger(opts: { level: LogLevel; base?: LogFields; sink?: LogSink }): Logger {
  const min = RANK[opts.level];
  const sink = opts.sink ?? stdoutSink;
  const base = opts.base ?? {};
  const write = (level: LogLevel, msg: string, fields?: LogFields) => {
    if (RANK[level] < min) return;
    const record: LogFields = { level, time: new Date().toISOString(), msg, ...base };
    if (fields) for (const [key, value] of Object.entries(fields)) record[key] = value instanceof Error ? serializeError(value) : value;
    sink(JSON.stringify(record));
  };
  return {
    debug: (msg, fields) => write("debug", msg, fields),
    info: (msg, fields) => write("info", msg, fields),
    warn: (msg, fields) => write("warn", msg, fields),
    error: (msg, fields) => write("error", msg, fields),
    child: (fields) => createLogger({ level: opts.level, base: { ...base, ...fields }, sink }),
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
