import { isAbsolute, resolve } from "node:path";
import ipaddr from "ipaddr.js";
import * as v from "valibot";
import { SCENARIOS } from "../hardware/simulator/model";
import { BATTERY_CHEMISTRIES, defaultCells } from "../hardware/soc";
import { POWER_LEVELS } from "./energy/levels";
import { isAllowPattern } from "./registries/reference";

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

const port = v.pipe(v.string(), v.transform(Number), v.integer("must be an integer"), v.minValue(0, "must be a port number"), v.maxValue(65535, "must be a port number"));
const positiveInt = v.pipe(v.string(), v.transform(Number), v.integer("must be an integer"), v.minValue(1, "must be positive"));
const nonNegativeInt = v.pipe(v.string(), v.transform(Number), v.integer("must be an integer"), v.minValue(0, "must not be negative"));
const positiveNumber = v.pipe(v.string(), v.transform(Number), v.number("must be a number"), v.finite("must be a number"), v.minValue(Number.MIN_VALUE, "must be positive"));
const nonNegativeNumber = v.pipe(v.string(), v.transform(Number), v.number("must be a number"), v.finite("must be a number"), v.minValue(0, "must not be negative"));
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
/** Durations like `500ms`, `5s`, `5m`, `2h`, `1d`, comma-separated, in milliseconds. */
const DURATION_UNITS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const durations = v.pipe(
  list,
  v.check((entries) => entries.every((entry) => /^\d+(ms|s|m|h|d)$/.test(entry)), "must be durations like 500ms, 5s, 5m, 2h or 1d, comma-separated"),
  v.transform((entries) =>
    entries.map((entry) => {
      const [, n, unit] = /^(\d+)(ms|s|m|h|d)$/.exec(entry)!;
      return Number(n) * DURATION_UNITS[unit as keyof typeof DURATION_UNITS];
    }),
  ),
  v.check((ms) => ms.length > 0 && ms.every((d) => d > 0), "must name at least one duration, each above zero"),
);
/** IP addresses or CIDR ranges, comma-separated. */
const addressRanges = v.pipe(
  list,
  v.check((entries) => entries.every((entry) => ipaddr.isValid(entry) || ipaddr.isValidCIDR(entry)), "must be IP addresses or CIDR ranges, comma-separated"),
);
const dayList = v.pipe(
  list,
  v.check((entries) => entries.every((entry) => /^[1-9]\d{0,3}$/.test(entry)), "must be whole days, comma-separated"),
  v.transform((entries) => entries.map(Number)),
  v.check((days) => days.every((d, i) => i === 0 || d > days[i - 1]!), "must be in increasing order"),
);
/** 0–100 with at most two decimals, e.g. `20` or `7.25`. */
const percent = v.pipe(v.string(), v.regex(/^\d{1,3}(\.\d{1,2})?$/, "must be a percentage with at most two decimals"), v.transform(Number), v.maxValue(100, "must be at most 100"));
/** `name=endpoint` pairs: `unix:///var/run/docker.sock`, `tcp://10.0.0.5:2375` or `http://…`. */
const dockerHosts = v.pipe(
  list,
  v.check((entries) => entries.every((entry) => /^[a-z0-9][a-z0-9_.-]*=(unix:\/\/\/\S+|(tcp|http):\/\/[^\s/]+:\d+\/?)$/.test(entry)), "must be name=unix:///path or name=tcp://host:port pairs"),
  v.check((entries) => entries.length > 0, "must name at least one engine"),
);

/** A DNS name of lower-case labels; instance hosts are `<label>.<domain>`, and a host name has at most 253 octets. */
const ingressDomain = v.pipe(
  v.string(),
  v.regex(/^(?=.{1,189}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$/, "must be a lower-case DNS name of at least two labels, at most 189 characters"),
);
/** `host:port` for an IPv4 address or a name. */
const hostPort = v.pipe(v.string(), v.regex(/^[A-Za-z0-9.-]+:\d{1,5}$/, "must be host:port"));
const ipv4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;
/** `engine=ip` pairs naming where each DOCKER_HOSTS engine publishes instances' HTTP ports. */
const upstreamAddresses = v.pipe(
  list,
  v.check((entries) => entries.every((entry) => /^[a-z0-9][a-z0-9_.-]*=/.test(entry) && ipv4.test(entry.slice(entry.indexOf("=") + 1))), "must be engine=IPv4 pairs"),
);

const EnvSchema = v.object({
  NODE_ENV: v.optional(v.picklist(["development", "test", "production"], "must be development, test or production"), "development"),
  HOST: v.optional(v.string(), "127.0.0.1"),
  PORT: v.optional(port, "3000"),
  LOG_LEVEL: v.optional(v.picklist(LOG_LEVELS, `must be one of ${LOG_LEVELS.join(", ")}`), "info"),
  DATABASE_URL: v.optional(url),
  DATA_DIR: v.optional(v.string(), "./data"),
  DATABASE_POOL_MAX: v.optional(positiveInt, "10"),
  REDIS_URL: v.optional(url, "redis://127.0.0.1:6379"),
  REDIS_COMMAND_TIMEOUT_MS: v.optional(positiveInt, "5000"),
  REDIS_PREFIX: v.optional(v.pipe(v.string(), v.regex(/^[a-zA-Z0-9:_-]+$/, "may hold letters, digits, ':', '_' and '-'")), "sahary"),
  DOCKER_SOCKET: v.optional(v.string(), "/var/run/docker.sock"),
  DOCKER_NAMESPACE: v.optional(v.pipe(v.string(), v.regex(/^[a-z0-9][a-z0-9_.-]*$/, "must be a lowercase Docker name")), "sahary"),
  CORS_ORIGINS: v.optional(list, ""),
  BODY_LIMIT_BYTES: v.optional(positiveInt, String(1024 * 1024)),
  TRUST_PROXY: v.optional(bool, "false"),
  TRUST_PROXY_HOPS: v.optional(v.pipe(positiveInt, v.maxValue(10, "must be at most 10")), "1"),
  REQUEST_TIMEOUT_MS: v.optional(
    v.pipe(positiveInt, v.minValue(1000, "must be at least 1000"), v.maxValue(240_000, "must be at most 240000 (Bun closes idle connections after 255 s at most)")),
    "30000",
  ),
  METRICS_TOKEN: v.optional(v.pipe(v.string(), v.trim(), v.minLength(16, "must be at least 16 characters"), v.regex(/^\S+$/, "must not contain spaces"))),
  METRICS_CACHE_MS: v.optional(nonNegativeInt, "5000"),
  APP_SECRET: v.optional(v.string()),
  PUBLIC_URL: v.optional(url),
  SMTP_URL: v.optional(url),
  MAIL_FROM: v.optional(v.string(), "Sahary Cloud <no-reply@sahary.local>"),
  WORKER_CONCURRENCY: v.optional(positiveInt, "8"),
  // Lifecycle jobs mostly wait on the engine, so more of them than WORKER_CONCURRENCY keep it busy during a power emergency's
  // hundred pauses; far more only queue inside dockerd (measured: 100 pauses take ~1 s at 8, 32 or 100 in parallel) and delay the first.
  LIFECYCLE_CONCURRENCY: v.optional(positiveInt, "16"),
  SHUTDOWN_TIMEOUT_MS: v.optional(positiveInt, "25000"),
  WORKER_LOCK_MS: v.optional(v.pipe(positiveInt, v.minValue(1000, "must be at least 1000")), "30000"),
  DOCKER_HOSTS: v.optional(dockerHosts),
  DOCKER_TIMEOUT_MS: v.optional(positiveInt, "30000"),
  HOST_CPU_OVERCOMMIT: v.optional(positiveNumber, "4"),
  HOST_MEMORY_OVERCOMMIT: v.optional(positiveNumber, "1"),
  QUOTA_MAX_INSTANCES: v.optional(positiveInt, "10"),
  QUOTA_MAX_VCPUS: v.optional(positiveNumber, "4"),
  QUOTA_MAX_MEMORY_MB: v.optional(positiveInt, "8192"),
  INSTANCE_PIDS_LIMIT: v.optional(positiveInt, "256"),
  INSTANCE_STOP_TIMEOUT_S: v.optional(positiveInt, "10"),
  IMAGE_PULL: v.optional(v.picklist(["missing", "never"], "must be missing or never"), "missing"),
  IMAGE_PULL_TIMEOUT_MS: v.optional(positiveInt, "120000"),
  COMPUTE_RECONCILE_INTERVAL_MS: v.optional(positiveInt, "30000"),
  IMAGE_MAX_BYTES: v.optional(positiveInt, String(2 * 1024 ** 3)),
  REGISTRY_ALLOWLIST: v.optional(
    v.pipe(
      list,
      v.check((entries) => entries.every(isAllowPattern), "must be registry hosts, optionally with a port and a repository prefix, e.g. docker.io,ghcr.io/acme,127.0.0.1:5000"),
    ),
    "docker.io",
  ),
  REGISTRY_INSECURE: v.optional(
    v.pipe(
      list,
      v.check((entries) => entries.every((e) => /^[a-z0-9.-]+(:\d{1,5})?$/.test(e)), "must be host or host:port entries"),
    ),
    "",
  ),
  INSTANCE_USER: v.optional(v.pipe(v.string(), v.regex(/^[1-9]\d{0,9}:[1-9]\d{0,9}$/, "must be a numeric uid:gid other than root, e.g. 10001:10001")), "10001:10001"),
  INSTANCE_TMP_PERCENT: v.optional(v.pipe(positiveInt, v.maxValue(100, "must be at most 100")), "25"),
  INSTANCE_RESTART_MAX: v.optional(nonNegativeInt, "3"),
  VOLUMES_DIR: v.optional(v.string()),
  VOLUME_DISK_SHARE: v.optional(v.pipe(positiveNumber, v.maxValue(1, "must be at most 1")), "0.5"),
  QUOTA_MAX_VOLUMES: v.optional(nonNegativeInt, "10"),
  QUOTA_MAX_VOLUME_GB: v.optional(nonNegativeInt, "100"),
  LOGS_FOLLOW_MAX_SECONDS: v.optional(positiveInt, "600"),
  LOGS_FOLLOW_MAX_BYTES: v.optional(positiveInt, String(8 * 1024 * 1024)),

  // Charge controller and energy
  SERIAL_PORT: v.optional(v.string()),
  SERIAL_PROTOCOL: v.optional(v.picklist(["vedirect", "modbus"], "must be vedirect or modbus"), "vedirect"),
  SERIAL_BAUD: v.optional(positiveInt),
  SERIAL_PARITY: v.optional(v.picklist(["none", "even", "odd"], "must be none, even or odd"), "none"),
  SERIAL_BRIDGE_NODE: v.optional(v.string(), "node"),
  SERIAL_RESTART_MIN_MS: v.optional(positiveInt, "500"),
  SERIAL_RESTART_MAX_MS: v.optional(positiveInt, "30000"),
  MODBUS_UNIT_ID: v.optional(v.pipe(positiveInt, v.maxValue(247, "must be a unit id from 1 to 247")), "1"),
  MODBUS_POLL_MS: v.optional(positiveInt, "5000"),
  MODBUS_TIMEOUT_MS: v.optional(positiveInt, "500"),
  MODBUS_RETRIES: v.optional(nonNegativeInt, "2"),
  ENERGY_SIMULATOR: v.optional(v.picklist(SCENARIOS, `must be one of ${SCENARIOS.join(", ")}`)),
  ENERGY_SIMULATOR_SPEED: v.optional(positiveNumber, "1"),
  ENERGY_TELEMETRY_TIMEOUT_MS: v.optional(positiveInt, "30000"),
  ENERGY_SAMPLE_SECONDS: v.optional(v.pipe(positiveInt, v.maxValue(3600, "must be at most 3600")), "10"),
  ENERGY_READING_RETENTION_DAYS: v.optional(positiveInt, "90"),
  ENERGY_GRID_CO2_G_PER_KWH: v.optional(nonNegativeNumber, "400"),
  BATTERY_CHEMISTRY: v.optional(v.picklist(BATTERY_CHEMISTRIES, `must be one of ${BATTERY_CHEMISTRIES.join(", ")}`), "lead-acid"),
  BATTERY_NOMINAL_VOLTAGE: v.optional(positiveNumber, "12"),
  BATTERY_CELLS: v.optional(positiveInt),
  BATTERY_CAPACITY_AH: v.optional(positiveNumber, "100"),
  BATTERY_MIN_TEMPERATURE_C: v.optional(
    v.pipe(v.string(), v.transform(Number), v.number("must be a number"), v.finite("must be a number"), v.minValue(-40, "must be at least -40"), v.maxValue(60, "must be at most 60")),
    "10",
  ),
  CONTROLLER_RATED_CURRENT_A: v.optional(positiveNumber, "50"),
  PV_ARRAY_WP: v.optional(positiveNumber, "600"),
  CONTROLLER_LVD_V: v.optional(positiveNumber),
  CONTROLLER_LVR_V: v.optional(positiveNumber),
  CONTROLLER_UV_WARNING_V: v.optional(positiveNumber),
  ENERGY_CUTOFF_SAG_V: v.optional(nonNegativeNumber),
  ENERGY_FORECAST_HORIZON_HOURS: v.optional(v.pipe(positiveInt, v.maxValue(168, "must be at most 168")), "48"),
  ENERGY_FORECAST_WARN_MINUTES: v.optional(nonNegativeInt, "120"),
  ENERGY_FORECAST_PREEMPT_MINUTES: v.optional(nonNegativeInt, "30"),
  ENERGY_FORECAST_INTERVAL_S: v.optional(positiveInt, "300"),
  ENERGY_SIMULATOR_START: v.optional(v.pipe(v.string(), v.isoTimestamp("must be an ISO 8601 timestamp"))),
  ENERGY_IDLE_POWER_W: v.optional(nonNegativeNumber),
  STATUS_PAGE_ENABLED: v.optional(bool, "true"),
  BACKUP_HOOK_URL: v.optional(url),
  BACKUP_HOOK_SECRET: v.optional(v.string()),
  BACKUP_HOOK_LEVEL: v.optional(v.picklist(POWER_LEVELS.slice(1), "must be conserve, critical or shutdown"), "critical"),
  BACKUP_HOOK_TIMEOUT_MS: v.optional(positiveInt, "5000"),
  BILLING_CURRENCY: v.optional(v.pipe(v.string(), v.regex(/^[A-Z]{3}$/, "must be a three-letter ISO 4217 code in capitals")), "USD"),
  BILLING_TAX_RATE_PERCENT: v.optional(percent, "0"),
  BILLING_INTERRUPTIBLE_DISCOUNT_PERCENT: v.optional(v.pipe(percent, v.integer("must be a whole percentage")), "40"),
  BILLING_EGRESS_PRICE_PER_GB_MINOR: v.optional(nonNegativeInt, "1"),
  BILLING_MINIMUM_CHARGE_MINOR: v.optional(positiveInt),
  BILLING_VOLUME_PRICE_PER_GB_MONTH_MINOR: v.optional(nonNegativeInt, "10"),
  METERING_INTERVAL_MS: v.optional(positiveInt, "60000"),
  METERING_SAMPLE_CONCURRENCY: v.optional(positiveInt, "32"),
  STRIPE_SECRET_KEY: v.optional(v.string()),
  STRIPE_WEBHOOK_SECRET: v.optional(v.string()),
  STRIPE_API_BASE: v.optional(v.pipe(url, v.regex(/^https?:\/\/[^/]+\/?$/, "must be a scheme, host and optional port, e.g. http://127.0.0.1:12111"))),
  STRIPE_WEBHOOK_TOLERANCE_S: v.optional(positiveInt, "300"),
  STRIPE_ACCOUNT_ID: v.optional(v.pipe(v.string(), v.regex(/^acct_[A-Za-z0-9]+$/, "must be a Stripe account id (acct_…)"))),
  PASSWORD_HASH_MEMORY_KIB: v.optional(positiveInt, String(OWASP_ARGON2.memoryKib)),
  PASSWORD_HASH_TIME_COST: v.optional(positiveInt, String(OWASP_ARGON2.timeCost)),
  LOGIN_MAX_FAILURES: v.optional(positiveInt, "10"),
  LOGIN_LOCKOUT_MINUTES: v.optional(positiveInt, "15"),
  RATE_LIMIT_LOGIN_PER_IP: v.optional(positiveInt, "100"),
  RATE_LIMIT_REGISTER_PER_IP: v.optional(positiveInt, "20"),
  RATE_LIMIT_RESET_PER_IP: v.optional(positiveInt, "20"),
  RATE_LIMIT_MAIL_PER_ACCOUNT: v.optional(positiveInt, "5"),
  RATE_LIMIT_ACCOUNT_PER_MINUTE: v.optional(nonNegativeInt, "1200"),
  RATE_LIMIT_API_KEY_PER_MINUTE: v.optional(nonNegativeInt, "600"),
  AUTH_CACHE_TTL_MS: v.optional(nonNegativeInt, "30000"),
  AUTH_CACHE_MAX_ENTRIES: v.optional(positiveInt, "10000"),
  INSTANCE_LIST_CACHE_TTL_MS: v.optional(nonNegativeInt, "30000"),
  VERIFY_TOKEN_HOURS: v.optional(positiveInt, "48"),
  RESET_TOKEN_MINUTES: v.optional(positiveInt, "60"),
  EMERGENCY_RESUME_STAGGER_MS: v.optional(nonNegativeInt, "2000"),
  EMERGENCY_ENFORCE_INTERVAL_MS: v.optional(positiveInt, "30000"),

  // Ingress (the reverse proxy in front of instances)
  INGRESS_DOMAIN: v.optional(ingressDomain),
  INGRESS_TLS: v.optional(v.picklist(["internal", "acme", "off"], "must be internal, acme or off")),
  INGRESS_HTTP_PORT: v.optional(v.pipe(port, v.minValue(1, "must be a port number"))),
  INGRESS_HTTPS_PORT: v.optional(v.pipe(port, v.minValue(1, "must be a port number"))),
  INGRESS_ADMIN: v.optional(v.pipe(v.string(), v.regex(/^(unix:\/\/\/\S+|http:\/\/[A-Za-z0-9.-]+:\d{1,5}\/?)$/, "must be unix:///path/to/socket or http://host:port"))),
  INGRESS_ADMIN_TIMEOUT_MS: v.optional(positiveInt, "10000"),
  INGRESS_PROXY: v.optional(v.picklist(["managed", "external"], "must be managed or external")),
  INGRESS_CADDY_BIN: v.optional(v.string(), "caddy"),
  INGRESS_EDGE_UPSTREAM: v.optional(hostPort),
  INGRESS_UPSTREAM_ADDRESSES: v.optional(upstreamAddresses, ""),
  INGRESS_LOG_ADDRESS: v.optional(v.union([v.literal("off"), hostPort], "must be host:port or off"), "127.0.0.1:2020"),
  INGRESS_LOG_LISTEN: v.optional(hostPort),
  INGRESS_TRAFFIC_FLUSH_MS: v.optional(positiveInt, "5000"),
  INGRESS_RECONCILE_INTERVAL_MS: v.optional(positiveInt, "2000"),
  INGRESS_ACME_EMAIL: v.optional(v.pipe(v.string(), v.email("must be an email address"))),
  INGRESS_ACME_CA: v.optional(url, "https://acme-v02.api.letsencrypt.org/directory"),
  // Customer events: notifications, email, outgoing webhooks
  NOTIFY_POLL_MS: v.optional(positiveInt, "1000"),
  NOTIFY_SWEEP_INTERVAL_MS: v.optional(positiveInt, "60000"),
  NOTIFY_CONCURRENCY: v.optional(positiveInt, "16"),
  WEBHOOK_RETRY_SCHEDULE: v.optional(durations, "5s,5m,30m,2h,5h,10h,10h"),
  // BullMQ's job lock is 30 s: an attempt must end well inside it or the job is run twice.
  WEBHOOK_TIMEOUT_MS: v.optional(v.pipe(positiveInt, v.maxValue(20_000, "must be at most 20000 (BullMQ's job lock is 30 s)")), "15000"),
  WEBHOOK_ALLOW_PRIVATE_TARGETS: v.optional(bool, "false"),
  WEBHOOK_DENY_ADDRESSES: v.optional(addressRanges, ""),
  WEBHOOK_DISABLE_AFTER_HOURS: v.optional(nonNegativeNumber, "120"),
  WEBHOOK_DISABLE_MIN_FAILURES: v.optional(positiveInt, "10"),
  WEBHOOK_SECRET_GRACE_HOURS: v.optional(nonNegativeNumber, "24"),
  DUNNING_REMINDER_DAYS: v.optional(dayList, "3,10,20"),
  DUNNING_BLOCK_AFTER_DAYS: v.optional(nonNegativeInt, "30"),
  DUNNING_CHECK_INTERVAL_MS: v.optional(positiveInt, "3600000"),
  EMERGENCY_THROTTLE_PERCENT: v.optional(v.pipe(positiveInt, v.maxValue(99, "must be below 100")), "25"),
});

export type Env = v.InferInput<typeof EnvSchema>;

/**
 * Stripe's minimum charge per currency, in minor units (Stripe documentation,
 * "Minimum and maximum charge amounts"); other currencies need
 * BILLING_MINIMUM_CHARGE_MINOR.
 */
const STRIPE_MINIMUM_CHARGE_MINOR: Record<string, number> = {
  USD: 50,
  EUR: 50,
  GBP: 30,
  CAD: 50,
  AUD: 50,
  NZD: 50,
  CHF: 50,
  SGD: 50,
  BRL: 50,
  INR: 50,
  JPY: 50,
  DKK: 250,
  NOK: 300,
  SEK: 300,
  PLN: 200,
  CZK: 1500,
  HKD: 400,
  MXN: 1000,
  AED: 200,
  RON: 200,
  BGN: 100,
  MYR: 200,
  THB: 1000,
};

function stripeKeyMode(key: string | undefined): boolean | null {
  const trimmed = key?.trim() ?? "";
  if (/^(sk|rk)_live_/.test(trimmed)) return true;
  if (/^(sk|rk)_test_/.test(trimmed)) return false;
  return null;
}

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
    // Simulated power data would drive real emergency actions.
    if (e.ENERGY_SIMULATOR) throw new ConfigError("ENERGY_SIMULATOR is for development: unset it when NODE_ENV=production");
    requireStripeKey("STRIPE_SECRET_KEY", e.STRIPE_SECRET_KEY, /^(sk|rk)_/, "secret key (sk_… or rk_…)");
    requireStripeKey("STRIPE_WEBHOOK_SECRET", e.STRIPE_WEBHOOK_SECRET, /^whsec_/, "webhook signing secret (whsec_…)");
    if (e.PASSWORD_HASH_MEMORY_KIB < 7168 || e.PASSWORD_HASH_MEMORY_KIB * e.PASSWORD_HASH_TIME_COST < MIN_ARGON2_WORK) {
      throw new ConfigError(`PASSWORD_HASH_MEMORY_KIB x PASSWORD_HASH_TIME_COST is below OWASP's Argon2id minimum in production (e.g. ${OWASP_ARGON2.memoryKib} KiB x ${OWASP_ARGON2.timeCost})`);
    }
  }
  // A stop waits up to its grace period for the container; the Docker call must outlive it.
  if (e.INSTANCE_STOP_TIMEOUT_S * 1000 + 5000 > e.DOCKER_TIMEOUT_MS) {
    throw new ConfigError("Invalid configuration: DOCKER_TIMEOUT_MS must exceed INSTANCE_STOP_TIMEOUT_S by at least 5 seconds");
  }
  const hostNames = (e.DOCKER_HOSTS ?? []).map((entry) => entry.split("=")[0]);
  if (new Set(hostNames).size !== hostNames.length) throw new ConfigError("Invalid configuration: DOCKER_HOSTS names an engine twice");
  if (e.SERIAL_PORT && e.ENERGY_SIMULATOR) throw new ConfigError("SERIAL_PORT and ENERGY_SIMULATOR exclude each other: read the real controller or simulate one");
  if (e.SERIAL_RESTART_MAX_MS < e.SERIAL_RESTART_MIN_MS) throw new ConfigError("SERIAL_RESTART_MAX_MS must not be below SERIAL_RESTART_MIN_MS");
  const computeHosts = (e.DOCKER_HOSTS ?? [`local=unix://${e.DOCKER_SOCKET}`]).map((entry) => {
    const at = entry.indexOf("=");
    return { name: entry.slice(0, at), endpoint: entry.slice(at + 1) };
  });
  const ingress = ingressSettings(e, production, computeHosts);
  const lastReminder = e.DUNNING_REMINDER_DAYS.at(-1);
  if (e.DUNNING_BLOCK_AFTER_DAYS > 0 && lastReminder !== undefined && lastReminder > e.DUNNING_BLOCK_AFTER_DAYS) {
    throw new ConfigError("DUNNING_REMINDER_DAYS must all come before DUNNING_BLOCK_AFTER_DAYS: a customer is warned before new instances are refused");
  }
  if (e.CONTROLLER_LVD_V !== undefined && e.CONTROLLER_LVR_V !== undefined && e.CONTROLLER_LVR_V <= e.CONTROLLER_LVD_V) {
    throw new ConfigError("CONTROLLER_LVR_V must be above CONTROLLER_LVD_V (the controller reconnects above where it disconnects)");
  }
  const minimumChargeMinor = e.BILLING_MINIMUM_CHARGE_MINOR ?? STRIPE_MINIMUM_CHARGE_MINOR[e.BILLING_CURRENCY];
  if (minimumChargeMinor === undefined) {
    throw new ConfigError(`BILLING_MINIMUM_CHARGE_MINOR is required for BILLING_CURRENCY=${e.BILLING_CURRENCY}: the payment provider's smallest charge in minor units`);
  }

  return {
    env: e.NODE_ENV,
    production,
    host: e.HOST,
    port: e.PORT,
    publicUrl: e.PUBLIC_URL ?? `http://${e.HOST === "0.0.0.0" ? "localhost" : e.HOST}:${e.PORT}`,
    logLevel: e.LOG_LEVEL,
    database: { url: e.DATABASE_URL, dataDir: e.DATA_DIR, poolMax: e.DATABASE_POOL_MAX },
    redis: { url: e.REDIS_URL, prefix: e.REDIS_PREFIX, commandTimeoutMs: e.REDIS_COMMAND_TIMEOUT_MS },
    docker: { socketPath: e.DOCKER_SOCKET, namespace: e.DOCKER_NAMESPACE },
    http: {
      corsOrigins: e.CORS_ORIGINS,
      bodyLimitBytes: e.BODY_LIMIT_BYTES,
      /** Proxies in front of the API that append to X-Forwarded-For (0: use the peer address). */
      trustedProxyHops: e.TRUST_PROXY ? e.TRUST_PROXY_HOPS : 0,
      requestTimeoutMs: e.REQUEST_TIMEOUT_MS,
    },
    /** Scrape-time gauges are read at most once per `cacheMs`; `token` guards /metrics when set. */
    metrics: { token: e.METRICS_TOKEN, cacheMs: e.METRICS_CACHE_MS },
    secret: e.APP_SECRET ?? DEV_SECRET,
    mail: { smtpUrl: e.SMTP_URL, from: e.MAIL_FROM, dir: `${e.DATA_DIR}/mail` },
    workers: {
      concurrency: e.WORKER_CONCURRENCY,
      lifecycleConcurrency: e.LIFECYCLE_CONCURRENCY,
      shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
      /** A job whose worker stops renewing its lock (killed) is taken up again within about twice this. */
      lockMs: e.WORKER_LOCK_MS,
    },
    compute: {
      /** The in-process cache of customers' instance lists (server/compute/list-cache.ts); a TTL of 0 turns it off. */
      listCache: { ttlMs: e.INSTANCE_LIST_CACHE_TTL_MS, maxOwners: e.AUTH_CACHE_MAX_ENTRIES },
      hosts: computeHosts,
      dockerTimeoutMs: e.DOCKER_TIMEOUT_MS,
      overcommit: { cpu: e.HOST_CPU_OVERCOMMIT, memory: e.HOST_MEMORY_OVERCOMMIT },
      defaultQuota: {
        maxInstances: e.QUOTA_MAX_INSTANCES,
        maxCpuMillis: Math.round(e.QUOTA_MAX_VCPUS * 1000),
        maxMemoryMb: e.QUOTA_MAX_MEMORY_MB,
        maxVolumes: e.QUOTA_MAX_VOLUMES,
        maxVolumeMb: e.QUOTA_MAX_VOLUME_GB * 1024,
      },
      pidsLimit: e.INSTANCE_PIDS_LIMIT,
      stopTimeoutS: e.INSTANCE_STOP_TIMEOUT_S,
      imagePull: e.IMAGE_PULL,
      imagePullTimeoutMs: e.IMAGE_PULL_TIMEOUT_MS,
      reconcileIntervalMs: e.COMPUTE_RECONCILE_INTERVAL_MS,
      imageMaxBytes: e.IMAGE_MAX_BYTES,
      registries: { allow: e.REGISTRY_ALLOWLIST, insecure: e.REGISTRY_INSECURE },
      /** The numeric user every container runs as, whatever its image says. */
      user: { uid: Number(e.INSTANCE_USER.split(":")[0]), gid: Number(e.INSTANCE_USER.split(":")[1]) },
      /** Each tmpfs (/tmp, an image's VOLUME folders) is capped at this share of the plan's memory, which its pages count against. */
      tmpPercent: e.INSTANCE_TMP_PERCENT,
      /** Crashes the engine restarts by itself (on-failure) before the instance goes to `error`. */
      restartMax: e.INSTANCE_RESTART_MAX,
      volumes: {
        dir: e.VOLUMES_DIR ? (isAbsolute(e.VOLUMES_DIR) ? e.VOLUMES_DIR : resolve(e.VOLUMES_DIR)) : `${isAbsolute(e.DATA_DIR) ? e.DATA_DIR : resolve(e.DATA_DIR)}/volumes`,
        diskShare: e.VOLUME_DISK_SHARE,
      },
      logsFollow: { maxSeconds: e.LOGS_FOLLOW_MAX_SECONDS, maxBytes: e.LOGS_FOLLOW_MAX_BYTES },
    },
    energy: {
      /** The monitor runs when a port is configured or a simulator is asked for. */
      monitorEnabled: Boolean(e.SERIAL_PORT || e.ENERGY_SIMULATOR),
      serial: {
        port: e.SERIAL_PORT,
        protocol: e.SERIAL_PROTOCOL,
        // VE.Direct is 19200 8N1; EPEver Tracers speak 115200 8N1.
        baud: e.SERIAL_BAUD ?? (e.SERIAL_PROTOCOL === "modbus" ? 115200 : 19200),
        parity: e.SERIAL_PARITY,
        nodeBin: e.SERIAL_BRIDGE_NODE,
        restartMinMs: e.SERIAL_RESTART_MIN_MS,
        restartMaxMs: e.SERIAL_RESTART_MAX_MS,
      },
      modbus: { unitId: e.MODBUS_UNIT_ID, pollMs: e.MODBUS_POLL_MS, timeoutMs: e.MODBUS_TIMEOUT_MS, retries: e.MODBUS_RETRIES },
      simulator: e.ENERGY_SIMULATOR ? { scenario: e.ENERGY_SIMULATOR, speed: e.ENERGY_SIMULATOR_SPEED, start: e.ENERGY_SIMULATOR_START ? new Date(e.ENERGY_SIMULATOR_START) : null } : null,
      telemetryTimeoutMs: e.ENERGY_TELEMETRY_TIMEOUT_MS,
      sampleSeconds: e.ENERGY_SAMPLE_SECONDS,
      retentionDays: e.ENERGY_READING_RETENTION_DAYS,
      gridCo2GramsPerKwh: e.ENERGY_GRID_CO2_G_PER_KWH,
      battery: {
        chemistry: e.BATTERY_CHEMISTRY,
        nominalVoltage: e.BATTERY_NOMINAL_VOLTAGE,
        cells: e.BATTERY_CELLS ?? defaultCells(e.BATTERY_CHEMISTRY, e.BATTERY_NOMINAL_VOLTAGE),
        capacityAh: e.BATTERY_CAPACITY_AH,
        /** The coldest the bank gets: the controller's temperature compensation raises its cut-off in the cold. */
        minTemperatureC: e.BATTERY_MIN_TEMPERATURE_C,
      },
      controller: {
        /** Battery and load current rating: readings beyond it are implausible. */
        ratedCurrentA: e.CONTROLLER_RATED_CURRENT_A,
        pvArrayWp: e.PV_ARRAY_WP,
        /** The controller's own cut-offs for VE.Direct (an EPEver's are read from its registers). */
        cutoffs: { lvd: e.CONTROLLER_LVD_V ?? null, lvr: e.CONTROLLER_LVR_V ?? null, uvWarning: e.CONTROLLER_UV_WARNING_V ?? null },
        /** Voltage sag under the platform's peak load, in the margin above the cut-off (default 0.2 V per 12 V). */
        sagVolts: e.ENERGY_CUTOFF_SAG_V ?? Math.round(0.2 * (e.BATTERY_NOMINAL_VOLTAGE / 12) * 1000) / 1000,
      },
      forecast: {
        horizonHours: e.ENERGY_FORECAST_HORIZON_HOURS,
        /** Tenants are warned when the pessimistic forecast crosses a threshold within this (0: never). */
        warnMinutes: e.ENERGY_FORECAST_WARN_MINUTES,
        /** The level steps down early when the expected forecast crosses a threshold within this (0: never). */
        preemptMinutes: e.ENERGY_FORECAST_PREEMPT_MINUTES,
        /** Energy-clock seconds between two forecasts in the monitor. */
        intervalSeconds: e.ENERGY_FORECAST_INTERVAL_S,
      },
      /** Watts the platform draws with no instance running; null: estimated from history (docs/billing.md, "Per-tenant solar accounting"). */
      idlePowerW: e.ENERGY_IDLE_POWER_W ?? null,
      statusPage: e.STATUS_PAGE_ENABLED,
      backupHook: { url: e.BACKUP_HOOK_URL, secret: e.BACKUP_HOOK_SECRET?.trim(), level: e.BACKUP_HOOK_LEVEL, timeoutMs: e.BACKUP_HOOK_TIMEOUT_MS },
      emergency: {
        /** Pause between two instances brought back by recovery, so they do not all start at once. */
        resumeStaggerMs: e.EMERGENCY_RESUME_STAGGER_MS,
        /** Period of the pass that converges instances to the current level (catches what a level-change job could not). */
        enforceIntervalMs: e.EMERGENCY_ENFORCE_INTERVAL_MS,
        /** Share of its plan's CPU an interruptible instance keeps at `conserve`. */
        throttlePercent: e.EMERGENCY_THROTTLE_PERCENT,
      },
    },
    billing: {
      currency: e.BILLING_CURRENCY,
      // Basis points keep the rate an integer: 7.25 % is 725.
      taxRateBps: Math.round(e.BILLING_TAX_RATE_PERCENT * 100),
      interruptibleDiscountPercent: e.BILLING_INTERRUPTIBLE_DISCOUNT_PERCENT,
      egressPricePerGbMinor: e.BILLING_EGRESS_PRICE_PER_GB_MINOR,
      volumePricePerGbMonthMinor: e.BILLING_VOLUME_PRICE_PER_GB_MONTH_MINOR,
      meteringIntervalMs: e.METERING_INTERVAL_MS,
      sampleConcurrency: e.METERING_SAMPLE_CONCURRENCY,
      /** Invoices whose total is above 0 and below this are carried forward, never charged (docs/billing.md, "Minimum charge"). */
      minimumChargeMinor,
    },
    stripe: {
      secretKey: e.STRIPE_SECRET_KEY?.trim(),
      // Pasted secrets often carry a newline; a signature never matches then (stack-pitfalls H-2).
      webhookSecret: e.STRIPE_WEBHOOK_SECRET?.trim(),
      apiBase: e.STRIPE_API_BASE,
      webhookToleranceS: e.STRIPE_WEBHOOK_TOLERANCE_S,
      /** Live or test, from the key's prefix (null for a key that says neither); events of the other mode are ignored. */
      livemode: stripeKeyMode(e.STRIPE_SECRET_KEY),
      /** Our own account; events that name another (Connect) account are ignored. */
      accountId: e.STRIPE_ACCOUNT_ID ?? null,
    },
    api: {
      /** Points per minute for authenticated calls (server/limits/budgets.ts); 0 turns a budget off. */
      budgets: { accountPerMinute: e.RATE_LIMIT_ACCOUNT_PER_MINUTE, apiKeyPerMinute: e.RATE_LIMIT_API_KEY_PER_MINUTE },
    },
    ingress,
    auth: {
      passwordHash: { memoryKib: e.PASSWORD_HASH_MEMORY_KIB, timeCost: e.PASSWORD_HASH_TIME_COST },
      loginMaxFailures: e.LOGIN_MAX_FAILURES,
      lockoutMs: e.LOGIN_LOCKOUT_MINUTES * 60_000,
      /** Requests allowed per window; the windows are fixed (docs/api.md, "Abuse protection"). */
      limits: {
        loginPerIp: e.RATE_LIMIT_LOGIN_PER_IP,
        registerPerIp: e.RATE_LIMIT_REGISTER_PER_IP,
        resetPerIp: e.RATE_LIMIT_RESET_PER_IP,
        mailPerAccount: e.RATE_LIMIT_MAIL_PER_ACCOUNT,
      },
      /** The in-process credential cache (server/auth/cache.ts); a TTL of 0 turns it off. */
      cache: { ttlMs: e.AUTH_CACHE_TTL_MS, maxEntries: e.AUTH_CACHE_MAX_ENTRIES },
      verifyTokenTtlMs: e.VERIFY_TOKEN_HOURS * 3_600_000,
      resetTokenTtlMs: e.RESET_TOKEN_MINUTES * 60_000,
    },
    notify: {
      /** How often the relay looks for events to fan out when the last look found none. */
      pollMs: e.NOTIFY_POLL_MS,
      /** Period of the sweep that re-enqueues deliveries whose job was lost (and a delivery counts as lost after being due this long). */
      sweepIntervalMs: e.NOTIFY_SWEEP_INTERVAL_MS,
      concurrency: e.NOTIFY_CONCURRENCY,
    },
    webhooks: {
      /** Wait before each retry: the first retry waits retrySchedule[0]; an attempt after the last one is not made. */
      retryScheduleMs: e.WEBHOOK_RETRY_SCHEDULE,
      timeoutMs: e.WEBHOOK_TIMEOUT_MS,
      requireHttps: production,
      allowPrivateTargets: e.WEBHOOK_ALLOW_PRIVATE_TARGETS,
      denyAddresses: e.WEBHOOK_DENY_ADDRESSES,
      disableAfterMs: Math.round(e.WEBHOOK_DISABLE_AFTER_HOURS * 3_600_000),
      disableMinFailures: e.WEBHOOK_DISABLE_MIN_FAILURES,
      secretGraceMs: Math.round(e.WEBHOOK_SECRET_GRACE_HOURS * 3_600_000),
    },
    dunning: {
      /** Days after an invoice is issued at which an unpaid one gets a reminder. */
      reminderDays: e.DUNNING_REMINDER_DAYS,
      /** Days after issue at which an unpaid invoice stops its owner creating instances; 0: never. */
      blockAfterDays: e.DUNNING_BLOCK_AFTER_DAYS,
      checkIntervalMs: e.DUNNING_CHECK_INTERVAL_MS,
    },
  };
}

export type Config = ReturnType<typeof loadConfig>;

type ParsedEnv = v.InferOutput<typeof EnvSchema>;

/**
 * The ingress proxy's settings. Development defaults work for a non-root
 * developer (unprivileged ports, a `*.localhost` domain that curl resolves by
 * itself, the proxy started by the platform); production listens on 80/443,
 * obtains certificates from ACME and expects the proxy to be run for it.
 */
function ingressSettings(e: ParsedEnv, production: boolean, hosts: Array<{ name: string; endpoint: string }>) {
  if (production && !e.INGRESS_DOMAIN) throw new ConfigError("INGRESS_DOMAIN is required when NODE_ENV=production: instances are served at https://<name>-<id>.<INGRESS_DOMAIN>");
  const tls = e.INGRESS_TLS ?? (production ? "acme" : "internal");
  const domain = e.INGRESS_DOMAIN ?? "sahary.localhost";
  if (tls === "acme" && (domain === "localhost" || domain.endsWith(".localhost"))) {
    throw new ConfigError("INGRESS_TLS=acme needs a public INGRESS_DOMAIN: no ACME CA issues certificates for .localhost");
  }
  const dataDir = isAbsolute(e.DATA_DIR) ? e.DATA_DIR : resolve(e.DATA_DIR);
  const admin = e.INGRESS_ADMIN ?? `unix://${dataDir}/caddy/admin.sock`;
  // sockaddr_un holds 108 bytes, the terminating NUL included.
  if (admin.startsWith("unix://") && Buffer.byteLength(admin.slice("unix://".length)) > 107) {
    throw new ConfigError("INGRESS_ADMIN: the socket path is longer than 107 bytes; use a shorter DATA_DIR or set INGRESS_ADMIN");
  }

  const upstreamPairs = new Map(e.INGRESS_UPSTREAM_ADDRESSES.map((entry) => [entry.slice(0, entry.indexOf("=")), entry.slice(entry.indexOf("=") + 1)]));
  for (const name of upstreamPairs.keys()) {
    if (!hosts.some((h) => h.name === name)) throw new ConfigError(`INGRESS_UPSTREAM_ADDRESSES names ${name}, which is not in DOCKER_HOSTS`);
  }
  /** Where each engine publishes instances' HTTP ports: loopback for a local engine, the host's own address for a remote one. */
  const publishAddresses: Record<string, string> = {};
  for (const host of hosts) {
    const explicit = upstreamPairs.get(host.name);
    const remote = host.endpoint.startsWith("unix://") ? null : new URL(host.endpoint).hostname;
    const address = explicit ?? (remote === null ? "127.0.0.1" : ipv4.test(remote) ? remote : null);
    if (!address) throw new ConfigError(`INGRESS_UPSTREAM_ADDRESSES must give the IPv4 address engine ${host.name} publishes instance ports on (its endpoint names a host, not an address)`);
    publishAddresses[host.name] = address;
  }

  const logAddress = e.INGRESS_LOG_ADDRESS === "off" ? null : e.INGRESS_LOG_ADDRESS;
  return {
    domain,
    tls,
    httpPort: e.INGRESS_HTTP_PORT ?? (production ? 80 : 8080),
    httpsPort: e.INGRESS_HTTPS_PORT ?? (production ? 443 : 8443),
    /** `unix:///path` or `http://host:port`; rendered into every configuration loaded, so the proxy keeps its admin endpoint. */
    admin,
    adminTimeoutMs: e.INGRESS_ADMIN_TIMEOUT_MS,
    /** managed: the workers start a local proxy whenever its admin endpoint does not answer; external: someone else runs it (tests run their own). */
    proxy: e.INGRESS_PROXY ?? (e.NODE_ENV === "development" ? "managed" : "external"),
    caddyBin: e.INGRESS_CADDY_BIN,
    /** Where the managed proxy keeps its certificates and state. */
    proxyDir: `${dataDir}/caddy`,
    edgeUpstream: e.INGRESS_EDGE_UPSTREAM ?? `${e.HOST === "0.0.0.0" || e.HOST === "::" ? "127.0.0.1" : e.HOST}:${e.PORT}`,
    publishAddresses,
    /** null: access logs are not sent, so traffic is not counted. */
    traffic: logAddress ? { address: logAddress, listen: e.INGRESS_LOG_LISTEN ?? logAddress, flushMs: e.INGRESS_TRAFFIC_FLUSH_MS } : null,
    reconcileIntervalMs: e.INGRESS_RECONCILE_INTERVAL_MS,
    acme: { email: e.INGRESS_ACME_EMAIL ?? null, ca: e.INGRESS_ACME_CA },
  };
}

export type IngressConfig = Config["ingress"];

function requireSecret(name: string, value: string | undefined): asserts value is string {
  if (!value) throw new ConfigError(`${name} is required when NODE_ENV=production`);
  const trimmed = value.trim();
  if (trimmed.length < MIN_SECRET_LENGTH || trimmed === DEV_SECRET || new Set(trimmed).size < 10) {
    throw new ConfigError(`${name} is too weak: use at least ${MIN_SECRET_LENGTH} random characters`);
  }
}

function requireStripeKey(name: string, value: string | undefined, shape: RegExp, what: string): void {
  if (!value?.trim()) throw new ConfigError(`${name} is required when NODE_ENV=production`);
  if (!shape.test(value.trim())) throw new ConfigError(`${name} does not look like a Stripe ${what}`);
}
