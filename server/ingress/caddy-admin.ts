import type { IngressConfig } from "../config";

/**
 * A client for Caddy's admin API. Every call has a timeout: the admin API has
 * been seen to hang after long uptimes (caddyserver/caddy#6844), and a hung
 * proxy must never hold up a lifecycle job.
 */

/** The proxy did not answer (not running, socket missing, or too slow). */
export class ProxyUnreachable extends Error {
  override name = "ProxyUnreachable";
}

/** The proxy answered with an error (e.g. a configuration it refused). */
export class ProxyRefused extends Error {
  override name = "ProxyRefused";
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export type CaddyAdmin = {
  /** Replaces the whole configuration (Caddy skips an identical one). */
  load(config: unknown): Promise<void>;
  /** Whether an object with this `@id` exists in the running configuration. */
  has(id: string): Promise<boolean>;
  /** Resolves when the admin endpoint answers. */
  ping(): Promise<void>;
  /** The local CA's root certificate (PEM), for clients of the `internal` TLS mode. */
  rootCertificate(): Promise<string>;
  /** How `admin.listen` must read in every configuration loaded, so the endpoint stays where it is. */
  readonly listen: string;
};

export function createCaddyAdmin(settings: Pick<IngressConfig, "admin" | "adminTimeoutMs">): CaddyAdmin {
  const unix = settings.admin.startsWith("unix://") ? settings.admin.slice("unix://".length) : null;
  const base = unix ? "http://caddy-admin" : settings.admin.replace(/\/$/, "");
  // Over a unix socket Caddy 2.6 accepts only an empty Host; over TCP the listen address itself.
  const headers: Record<string, string> = unix ? { host: "" } : {};

  async function call(method: string, path: string, body?: unknown, timeoutMs = settings.adminTimeoutMs): Promise<Response> {
    let response: Response;
    try {
      response = await fetch(`${base}${path}`, {
        method,
        headers: body === undefined ? headers : { ...headers, "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs),
        ...(unix ? { unix } : {}),
      } as RequestInit);
    } catch (error) {
      const reason = (error as Error).name === "TimeoutError" ? `no answer within ${timeoutMs} ms` : ((error as { code?: string }).code ?? (error as Error).message);
      throw new ProxyUnreachable(`the proxy's admin API at ${settings.admin} is unreachable: ${reason}`);
    }
    return response;
  }

  async function refused(response: Response): Promise<ProxyRefused> {
    const text = await response.text().catch(() => "");
    let message = text;
    try {
      message = (JSON.parse(text) as { error?: string }).error ?? text;
    } catch {
      // not JSON: keep the text
    }
    return new ProxyRefused(response.status, `the proxy refused the request (${response.status}): ${message.slice(0, 500)}`);
  }

  return {
    listen: unix ? `unix/${unix}` : settings.admin.replace(/^http:\/\//, "").replace(/\/$/, ""),
    async load(config) {
      const response = await call("POST", "/load", config);
      if (!response.ok) throw await refused(response);
      await response.body?.cancel();
    },
    async has(id) {
      const response = await call("GET", `/id/${encodeURIComponent(id)}`);
      await response.body?.cancel();
      if (response.ok) return true;
      if (response.status === 404) return false;
      throw await refused(response);
    },
    async ping() {
      const response = await call("GET", "/config/admin", undefined, Math.min(settings.adminTimeoutMs, 2000));
      if (!response.ok) throw await refused(response);
      await response.body?.cancel();
    },
    async rootCertificate() {
      const response = await call("GET", "/pki/ca/local");
      if (!response.ok) throw await refused(response);
      return ((await response.json()) as { root_certificate: string }).root_certificate;
    },
  };
}
