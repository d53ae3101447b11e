import * as v from "valibot";

/**
 * Every environment variable the platform reads, validated once at start-up.
 * Nothing else in the code base reads `process.env`: configuration travels as a
 * value so tests can build as many independent configurations as they need.
 */

const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;

/**
 * OWASP's Argon2id baseline (19 MiB, 2 passes, ~30 ms here). Production may trade
 * memory for passes along OWASP's table but not go below its memory x time product.
 */
const OWASP_ARGON2 = { memoryKib: 19456, timeCost: 2 };
const MIN_ARGON2_WORK = 7168 * 5;

const port = v.pipe(
  v.string(),
  v.transform(Number),
  v.integer("must be an integer"),
  v.minValue(0, "must be a port number"),
  v.maxValue(65535, "must be a port number"),
);
const positiveInt = v.pipe(v.string(), v.transform(Number), v.integer("must be an integer"), v.minValue(1, "must be positive"));
const list = v.pipe(
  v.string(),
  v.transform((s) =>
    s
      .split(",")
      .map((x) => x.trim())
      .filter(Boolean),
  ),
);
const bool = v.pipe(
  v.picklist(["true", "false", "1", "0"], "must be true or false"),
  v.transform((s) => s === "true" || s === "1"),
);
const url = v.pipe(v.string(), v.url("must be a URL"));

const EnvSchema = v.object({
  NODE_ENV: v.optional(v.picklist(["development", "test", "production"], "must be development, test or production"), "development"),
  HOST: v.optional(v.string(), "127.0.0.1"),
  PORT: v.optional(port, "3000"),
  LOG_LEVEL: v.optional(v.picklist(LOG_LEVELS, `must be one of ${LOG_LEVELS.join(", ")}`), "info"),
  DATABASE_URL: v.optional(url),
  DATA_DIR: v.optional(v.string(), "./data"),
  DATABASE_POOL_MAX: v.optional(positiveInt, "10"),
  REDIS_URL: v.optional(url, "redis://127.0.0.1:6379"),
  REDIS_PREFIX: v.optional(v.pipe(v.string(), v.regex(/^[a-zA-Z0-9:_-]+$/, "may hold letters, digits, ':', '_' and '-'")), "sahary"),
  DOCKER_SOCKET: v.optional(v.string(), "/var/run/docker.sock"),
  DOCKER_NAMESPACE: v.optional(v.pipe(v.string(), v.regex(/^[a-z0-9][a-z0-9_.-]*$/, "must be a lowercase Docker name")), "sahary"),
  CORS_ORIGINS: v.optional(list, ""),
  BODY_LIMIT_BYTES: v.optional(positiveInt, String(1024 * 1024)),
  TRUST_PROXY: v.optional(bool, "false"),
  APP_SECRET: v.optional(v.string()),
  PUBLIC_URL: v.optional(url),
  SMTP_URL: v.optional(url),
  MAIL_FROM: v.optional(v.string(), "Sahary Cloud <no-reply@sahary.local>"),
  WORKER_CONCURRENCY: v.optional(positiveInt, "8"),
  SHUTDOWN_TIMEOUT_MS: v.optional(positiveInt, "25000"),
  PASSWORD_HASH_MEMORY_KIB: v.optional(positiveInt, String(OWASP_ARGON2.memoryKib)),
  PASSWORD_HASH_TIME_COST: v.optional(positiveInt, String(OWASP_ARGON2.timeCost)),
  LOGIN_MAX_FAILURES: v.optional(positiveInt, "10"),
  LOGIN_LOCKOUT_MINUTES: v.optional(positiveInt, "15"),
  RATE_LIMIT_LOGIN_PER_IP: v.optional(positiveInt, "100"),
  RATE_LIMIT_REGISTER_PER_IP: v.optional(positiveInt, "20"),
  RATE_LIMIT_RESET_PER_IP: v.optional(positiveInt, "20"),
  RATE_LIMIT_MAIL_PER_ACCOUNT: v.optional(positiveInt, "5"),
  VERIFY_TOKEN_HOURS: v.optional(positiveInt, "48"),
  RESET_TOKEN_MINUTES: v.optional(positiveInt, "60"),
});

export type Env = v.InferInput<typeof EnvSchema>;

// A development secret is fine on a laptop; production refuses it by name.
const DEV_SECRET = "dev-only-secret-change-me-dev-only-secret";
const MIN_SECRET_LENGTH = 32;

export class ConfigError extends Error {
  override name = "ConfigError";
}

export function loadConfig(env: Record<string, string | undefined> = process.env) {
  // Empty strings mean "unset": docker-compose and shells produce them freely.
  const present = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== undefined && value !== ""));
  const parsed = v.safeParse(EnvSchema, present);
  if (!parsed.success) {
    const problems = parsed.issues.map((issue) => `${v.getDotPath(issue) ?? "environment"} ${issue.message}`);
    throw new ConfigError(`Invalid configuration: ${problems.join("; ")}`);
  }
  const e = parsed.output;
  const production = e.NODE_ENV === "production";

  if (production) {
    requireSecret("APP_SECRET", e.APP_SECRET);
    if (e.PASSWORD_HASH_MEMORY_KIB < 7168 || e.PASSWORD_HASH_MEMORY_KIB * e.PASSWORD_HASH_TIME_COST < MIN_ARGON2_WORK) {
      throw new ConfigError(
        `PASSWORD_HASH_MEMORY_KIB x PASSWORD_HASH_TIME_COST is below OWASP's Argon2id minimum in production (e.g. ${OWASP_ARGON2.memoryKib} KiB x ${OWASP_ARGON2.timeCost})`,
      );
    }
  }

  return {
    env: e.NODE_ENV,
    production,
    host: e.HOST,
    port: e.PORT,
    publicUrl: e.PUBLIC_URL ?? `http://${e.HOST === "0.0.0.0" ? "localhost" : e.HOST}:${e.PORT}`,
    logLevel: e.LOG_LEVEL,
    database: { url: e.DATABASE_URL, dataDir: e.DATA_DIR, poolMax: e.DATABASE_POOL_MAX },
    redis: { url: e.REDIS_URL, prefix: e.REDIS_PREFIX },
    docker: { socketPath: e.DOCKER_SOCKET, namespace: e.DOCKER_NAMESPACE },
    http: { corsOrigins: e.CORS_ORIGINS, bodyLimitBytes: e.BODY_LIMIT_BYTES, trustProxy: e.TRUST_PROXY },
    secret: e.APP_SECRET ?? DEV_SECRET,
    mail: { smtpUrl: e.SMTP_URL, from: e.MAIL_FROM, dir: `${e.DATA_DIR}/mail` },
    workers: { concurrency: e.WORKER_CONCURRENCY, shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS },
    auth: {
      passwordHash: { memoryKib: e.PASSWORD_HASH_MEMORY_KIB, timeCost: e.PASSWORD_HASH_TIME_COST },
      loginMaxFailures: e.LOGIN_MAX_FAILURES,
      lockoutMs: e.LOGIN_LOCKOUT_MINUTES * 60_000,
      /** Requests allowed per window; the windows are fixed (README, "Auth"). */
      limits: {
        loginPerIp: e.RATE_LIMIT_LOGIN_PER_IP,
        registerPerIp: e.RATE_LIMIT_REGISTER_PER_IP,
        resetPerIp: e.RATE_LIMIT_RESET_PER_IP,
        mailPerAccount: e.RATE_LIMIT_MAIL_PER_ACCOUNT,
      },
      verifyTokenTtlMs: e.VERIFY_TOKEN_HOURS * 3_600_000,
      resetTokenTtlMs: e.RESET_TOKEN_MINUTES * 60_000,
    },
  };
}

export type Config = ReturnType<typeof loadConfig>;

function requireSecret(name: string, value: string | undefined): asserts value is string {
  if (!value) throw new ConfigError(`${name} is required when NODE_ENV=production`);
  const trimmed = value.trim();
  if (trimmed.length < MIN_SECRET_LENGTH || trimmed === DEV_SECRET || new Set(trimmed).size < 10) {
    throw new ConfigError(`${name} is too weak: use at least ${MIN_SECRET_LENGTH} random characters`);
  }
}

export { requireSecret };
