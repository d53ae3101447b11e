import { TRPCError } from "@trpc/server";
import { TRPC_ERROR_CODES_BY_KEY, type TRPC_ERROR_CODE_KEY } from "@trpc/server/rpc";
import { getHTTPStatusCodeFromError } from "@trpc/server/http";

/**
 * The closed list of application error codes and the one mapping from each to a
 * tRPC code (which fixes the HTTP status). Clients branch on `appCode`; it never
 * changes meaning once published. Add codes here, nowhere else.
 */
const APP_ERRORS = {
  // Request shape
  VALIDATION_FAILED: "BAD_REQUEST",
  MALFORMED_REQUEST: "PARSE_ERROR",
  PAYLOAD_TOO_LARGE: "PAYLOAD_TOO_LARGE",
  UNSUPPORTED_MEDIA_TYPE: "UNSUPPORTED_MEDIA_TYPE",
  PROCEDURE_NOT_FOUND: "NOT_FOUND",
  METHOD_NOT_ALLOWED: "METHOD_NOT_SUPPORTED",
  NOT_FOUND: "NOT_FOUND",
  CONFLICT: "CONFLICT",
  RATE_LIMITED: "TOO_MANY_REQUESTS",

  // Identity and permission
  UNAUTHENTICATED: "UNAUTHORIZED",
  FORBIDDEN: "FORBIDDEN",
  /** A cookie-authenticated mutation without a same-origin `Origin` and a JSON body (CSRF defence). */
  CROSS_SITE_REQUEST: "FORBIDDEN",
  INSUFFICIENT_SCOPE: "FORBIDDEN",
  ACCOUNT_SUSPENDED: "FORBIDDEN",
  EMAIL_NOT_VERIFIED: "FORBIDDEN",
  INVALID_CREDENTIALS: "UNAUTHORIZED",
  ACCOUNT_LOCKED: "TOO_MANY_REQUESTS",
  EMAIL_TAKEN: "CONFLICT",
  WEAK_PASSWORD: "BAD_REQUEST",
  TOKEN_INVALID: "BAD_REQUEST",
  TOKEN_EXPIRED: "BAD_REQUEST",
  LAST_ADMIN: "PRECONDITION_FAILED",

  // Compute
  PLAN_NOT_FOUND: "NOT_FOUND",
  IMAGE_NOT_FOUND: "NOT_FOUND",
  QUOTA_EXCEEDED: "FORBIDDEN",
  CAPACITY_EXHAUSTED: "SERVICE_UNAVAILABLE",
  INVALID_TRANSITION: "CONFLICT",
  IDEMPOTENCY_KEY_REUSED: "CONFLICT",
  POWER_RESTRICTED: "SERVICE_UNAVAILABLE",
  HTTP_PORT_INVALID: "BAD_REQUEST",
  IMAGE_REFERENCE_INVALID: "BAD_REQUEST",
  REGISTRY_NOT_ALLOWED: "FORBIDDEN",
  /** No container engine answers: nothing can be created until one does (not a question of room). */
  ENGINE_OFFLINE: "SERVICE_UNAVAILABLE",
  VOLUME_NOT_FOUND: "NOT_FOUND",
  /** No host can make sized volumes (see hosts.volumesNote), or none has the disk left. */
  VOLUMES_UNAVAILABLE: "SERVICE_UNAVAILABLE",
  MOUNT_PATH_INVALID: "BAD_REQUEST",

  // Ingress (answers the edge gives visitors of an instance's URL)
  INSTANCE_UNAVAILABLE: "SERVICE_UNAVAILABLE",
  INSTANCE_NOT_RESPONDING: "BAD_GATEWAY",

  // Energy
  /** A power policy whose shutdown level sits below the charge controller's own low-voltage disconnect (with margin). */
  POLICY_BELOW_CUTOFF: "PRECONDITION_FAILED",

  // Billing
  INVOICE_NOT_PAYABLE: "CONFLICT",
  PAYMENT_PROVIDER_ERROR: "BAD_GATEWAY",
  WEBHOOK_SIGNATURE_INVALID: "BAD_REQUEST",
  /** An invoice has been unpaid for DUNNING_BLOCK_AFTER_DAYS: no new instances until it is paid. */
  PAYMENT_OVERDUE: "PAYMENT_REQUIRED",

  // Notifications and outgoing webhooks
  /** The channel cannot be switched off for this event type (security notices). */
  NOTIFICATION_MANDATORY: "BAD_REQUEST",
  /** The URL is not an allowed webhook target (scheme, credentials, or an address SSRF rules refuse). */
  WEBHOOK_URL_REFUSED: "BAD_REQUEST",
  WEBHOOK_ENDPOINT_DISABLED: "CONFLICT",

  // Platform
  DEPENDENCY_UNAVAILABLE: "SERVICE_UNAVAILABLE",
  DEADLINE_EXCEEDED: "GATEWAY_TIMEOUT",
  INTERNAL: "INTERNAL_SERVER_ERROR",
} as const satisfies Record<string, TRPC_ERROR_CODE_KEY>;

export type AppErrorCode = keyof typeof APP_ERRORS;
export const APP_ERROR_CODES = Object.keys(APP_ERRORS) as AppErrorCode[];

/**
 * A domain error. It is a TRPCError so a procedure can let it propagate and the
 * HTTP status follows from the code; workers and webhooks check `appCode`.
 */
export class AppError extends TRPCError {
  readonly appCode: AppErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(appCode: AppErrorCode, message: string, opts: { details?: Record<string, unknown>; cause?: unknown } = {}) {
    super({ code: APP_ERRORS[appCode], message, cause: opts.cause });
    this.name = "AppError";
    this.appCode = appCode;
    this.details = opts.details;
  }
}

export function trpcCodeOf(appCode: AppErrorCode): TRPC_ERROR_CODE_KEY {
  return APP_ERRORS[appCode];
}

export function isAppError(error: unknown, code?: AppErrorCode): error is AppError {
  return error instanceof AppError && (code === undefined || error.appCode === code);
}

/** For errors tRPC raises itself (parse failures, unknown paths, validation). */
export function appCodeForTrpcError(error: TRPCError): AppErrorCode {
  if (error instanceof AppError) return error.appCode;
  switch (error.code) {
    case "PARSE_ERROR":
      return "MALFORMED_REQUEST";
    case "BAD_REQUEST":
      return hasIssues(error.cause) ? "VALIDATION_FAILED" : "MALFORMED_REQUEST";
    case "NOT_FOUND":
      return "PROCEDURE_NOT_FOUND";
    case "METHOD_NOT_SUPPORTED":
      return "METHOD_NOT_ALLOWED";
    case "UNSUPPORTED_MEDIA_TYPE":
      return "UNSUPPORTED_MEDIA_TYPE";
    case "PAYLOAD_TOO_LARGE":
      return "PAYLOAD_TOO_LARGE";
    case "UNAUTHORIZED":
      return "UNAUTHENTICATED";
    case "FORBIDDEN":
      return "FORBIDDEN";
    case "TOO_MANY_REQUESTS":
      return "RATE_LIMITED";
    case "CONFLICT":
      return "CONFLICT";
    case "SERVICE_UNAVAILABLE":
      return "DEPENDENCY_UNAVAILABLE";
    default:
      return "INTERNAL";
  }
}

export interface ValidationIssue {
  path: string;
  message: string;
}

/**
 * The issues of a validation failure for the answer: at most `max` of them
 * (a hostile body can produce tens of thousands), with how many were left out.
 */
export function validationIssues(cause: unknown, max: number): { issues: ValidationIssue[]; omitted: number } | undefined {
  if (!hasIssues(cause)) return undefined;
  const shown = cause.issues.slice(0, max).map((issue) => ({
    path: (issue.path ?? []).map((seg) => (typeof seg === "object" && seg !== null && "key" in seg ? String(seg.key) : String(seg))).join("."),
    // A strict object's refusal of a stray key reads "Invalid key: Expected never but received …"; the path names the key.
    message: (issue as { type?: unknown; expected?: unknown }).type === "strict_object" && (issue as { expected?: unknown }).expected === "never" ? "is not a known field" : issue.message,
  }));
  return { issues: shown, omitted: cause.issues.length - shown.length };
}

function hasIssues(cause: unknown): cause is { issues: Array<{ message: string; path?: ReadonlyArray<unknown> }> } {
  return typeof cause === "object" && cause !== null && Array.isArray((cause as { issues?: unknown }).issues);
}

/**
 * The error body for routes outside tRPC (webhooks, health, PDFs, limits). It
 * mirrors tRPC's error shape so clients parse one format everywhere.
 */
export function errorBody(appCode: AppErrorCode, message: string, requestId: string | null, details?: Record<string, unknown>) {
  const code = APP_ERRORS[appCode];
  return {
    error: {
      message,
      code: TRPC_ERROR_CODES_BY_KEY[code],
      data: { code, httpStatus: httpStatusOf(appCode), appCode, requestId, ...(details ? { details } : {}) },
    },
  };
}

export function httpStatusOf(appCode: AppErrorCode): number {
  return getHTTPStatusCodeFromError(new TRPCError({ code: APP_ERRORS[appCode] }));
}
