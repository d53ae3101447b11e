import type { ActionKind, InstanceState } from "../compute/states";
import { POWER_EMERGENCY_REASON } from "../compute/states";
import type { RecoveryEstimate } from "../energy/recovery";
import { errorBody, type AppErrorCode } from "../errors";
import { escapeHtml } from "../html";

/**
 * What a visitor of an instance's URL is told when the proxy sent the request
 * to the platform instead of the container. Decided from live state only.
 */
export type EdgeState = "power" | "starting" | "paused" | "stopped" | "unavailable" | "gone";

const STARTS: readonly ActionKind[] = ["create", "start", "restart", "resume"];

export function edgeStateOf(instance: { state: InstanceState; stateReason: string | null }, openAction: { kind: ActionKind; reason: string } | null): EdgeState {
  const { state } = instance;
  if (state === "deleting" || state === "deleted") return "gone";
  if (openAction && (openAction.kind === "pause" || openAction.kind === "stop") && openAction.reason === POWER_EMERGENCY_REASON) return "power";
  if (openAction && STARTS.includes(openAction.kind)) return "starting";
  if (state === "pending" || state === "provisioning") return "starting";
  if ((state === "paused" || state === "stopped" || state === "stopping") && instance.stateReason === POWER_EMERGENCY_REASON) return "power";
  // Running, yet sent here: the route is being switched to the container (or its port is not known yet).
  if (state === "running") return "starting";
  if (state === "paused") return "paused";
  if (state === "stopped" || state === "stopping") return "stopped";
  return "unavailable";
}

/** Retry-After when the battery gives no estimate (not charging, no telemetry). */
export const UNKNOWN_RETRY_AFTER_S = 900;

export type EdgeAnswer = {
  status: number;
  appCode: AppErrorCode;
  title: string;
  message: string;
  retryAfter: number | null;
  details: Record<string, unknown>;
  /** Lines for the HTML page, label and value. */
  facts: Array<[string, string]>;
};

export function instanceAnswer(host: string, state: Exclude<EdgeState, "gone">, power: RecoveryEstimate | null, now: Date = new Date()): EdgeAnswer {
  switch (state) {
    case "power": {
      const retryAfter = clampRetry(power?.seconds ?? UNKNOWN_RETRY_AFTER_S);
      const facts: Array<[string, string]> = [
        ["Battery", power?.batteryPercent === null || power?.batteryPercent === undefined ? "unknown" : `${power.batteryPercent.toFixed(0)} %`],
        ["Power level", power?.level ?? "unknown"],
        ["Expected back", power?.at ? `around ${clock(power.at, now)} (${relative(new Date(power.at).getTime() - now.getTime())})` : "when the battery has recovered; no estimate yet"],
      ];
      return {
        status: 503,
        appCode: "INSTANCE_UNAVAILABLE",
        title: "Paused while the solar battery recovers",
        message: "This site runs on solar power. It is paused while the battery recovers and comes back by itself.",
        retryAfter,
        details: {
          host,
          state: "paused_for_power",
          retryAfterSeconds: retryAfter,
          power: power ? { level: power.level, batteryPercent: power.batteryPercent, trend: power.trend, returnsAtPercent: power.targetPercent, expectedBackAt: power.at } : null,
        },
        facts,
      };
    }
    case "starting":
      return simple(host, "starting", "Starting", "This site is starting. Try again in a few seconds.", 5);
    case "paused":
      return simple(host, "paused", "Paused", "This site is paused.", 60);
    case "stopped":
      return simple(host, "stopped", "Stopped", "This site is stopped by its owner.", null);
    case "unavailable":
      return simple(host, "unavailable", "Unavailable", "This site is not running right now.", null);
  }
}

function simple(host: string, state: string, title: string, message: string, retryAfter: number | null): EdgeAnswer {
  return { status: 503, appCode: "INSTANCE_UNAVAILABLE", title, message, retryAfter, details: { host, state, retryAfterSeconds: retryAfter }, facts: [] };
}

export function unknownHostAnswer(host: string): EdgeAnswer {
  return { status: 404, appCode: "NOT_FOUND", title: "Not found", message: "No site is served at this address.", retryAfter: null, details: { host }, facts: [] };
}

export function notRespondingAnswer(host: string, proxyStatus: number | null): EdgeAnswer {
  return {
    status: 502,
    appCode: "INSTANCE_NOT_RESPONDING",
    title: "Not responding",
    message: "This site is running but did not answer. Try again shortly.",
    retryAfter: 10,
    details: { host, state: "not_responding", proxyStatus, retryAfterSeconds: 10 },
    facts: [],
  };
}

/** JSON for API clients (the platform's error envelope), a small self-contained page for everyone else. */
export function renderAnswer(answer: EdgeAnswer, accept: string | undefined, requestId: string | null): { body: string; headers: Record<string, string> } {
  const headers: Record<string, string> = { "cache-control": "no-store" };
  if (answer.retryAfter !== null) headers["retry-after"] = String(answer.retryAfter);
  if (wantsJson(accept)) {
    headers["content-type"] = "application/json; charset=utf-8";
    return { body: JSON.stringify(errorBody(answer.appCode, answer.message, requestId, answer.details)), headers };
  }
  headers["content-type"] = "text/html; charset=utf-8";
  return { body: page(answer), headers };
}

export function wantsJson(accept: string | undefined): boolean {
  const value = (accept ?? "").toLowerCase();
  return value.includes("json") && !value.includes("text/html");
}

// No external assets, no script: it is served from a battery.
function page(answer: EdgeAnswer): string {
  const facts = answer.facts.length ? `<dl>${answer.facts.map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd>${escapeHtml(v)}</dd>`).join("")}</dl>` : "";
  const refresh = answer.retryAfter !== null && answer.retryAfter <= 10 ? `<meta http-equiv="refresh" content="${answer.retryAfter}">` : "";
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">${refresh}<title>${escapeHtml(answer.title)}</title><style>body{font:16px/1.5 system-ui,sans-serif;max-width:34rem;margin:12vh auto;padding:0 1rem;color:#222;background:#fffdf6}h1{font-size:1.4rem;margin:0 0 .5rem}dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}dt{color:#666}dd{margin:0}small{color:#666}</style></head><body><h1>${escapeHtml(answer.title)}</h1><p>${escapeHtml(answer.message)}</p>${facts}<p><small>${answer.status} · Sahary Cloud, a solar-powered host</small></p></body></html>\n`;
}

function clampRetry(seconds: number): number {
  return Math.min(86_400, Math.max(30, Math.round(seconds)));
}

function clock(iso: string, now: Date): string {
  return iso.slice(0, 10) === now.toISOString().slice(0, 10) ? `${iso.slice(11, 16)} UTC` : `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`;
}

function relative(ms: number): string {
  const minutes = Math.max(1, Math.round(ms / 60_000));
  if (minutes < 90) return `in about ${minutes} minute${minutes === 1 ? "" : "s"}`;
  const hours = Math.round(minutes / 60);
  return `in about ${hours} hours`;
}
