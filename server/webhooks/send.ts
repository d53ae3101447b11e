import type { ResolvedTarget } from "./targets";

/** How much of a response body is read and kept: enough to show a receiver's error, never a download. */
export const RESPONSE_CAPTURE_BYTES = 4096;

export type SendResult = {
  /** null when no HTTP response came back (timeout, refused connection, TLS failure). */
  statusCode: number | null;
  durationMs: number;
  /** The start of the response body (at most RESPONSE_CAPTURE_BYTES, decoded as UTF-8). */
  body: string | null;
  /** From a `Retry-After` header (seconds or an HTTP date), in milliseconds from now. */
  retryAfterMs: number | null;
  error: string | null;
};

/**
 * POSTs `body` to the checked address of `target`. The URL handed to fetch
 * names the address, not the host, so nothing resolves the name a second
 * time; `Host` and the TLS server name (SNI and certificate check, Bun ≥ 1.4)
 * carry the real host. Redirects are not followed (a 3xx is a failure and
 * could point anywhere), one timeout covers the whole exchange, and the body
 * is read only up to RESPONSE_CAPTURE_BYTES, then the stream is cancelled.
 *
 * `tls` is for callers that trust a private CA (the tests' self-signed
 * receiver); production passes none and the system roots apply.
 */
export async function sendWebhook(target: ResolvedTarget, request: { headers: Record<string, string>; body: string }, opts: { timeoutMs: number; tls?: { ca: string } }): Promise<SendResult> {
  const { url } = target;
  const address = target.family === 6 ? `[${target.address}]` : target.address;
  const pinned = `${url.protocol}//${address}${url.port ? `:${url.port}` : ""}${url.pathname}${url.search}`;
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  try {
    const response = await fetch(pinned, {
      method: "POST",
      headers: { ...request.headers, host: url.host, "content-type": "application/json", "user-agent": "Sahary-Webhooks/1" },
      body: request.body,
      redirect: "manual",
      signal: AbortSignal.timeout(opts.timeoutMs),
      tls: { serverName: url.hostname.replace(/^\[(.*)\]$/, "$1"), ...(opts.tls ? { ca: opts.tls.ca } : {}) },
      // A fresh connection per attempt: a pooled TLS connection to this address may have been verified for another customer's host name.
      keepalive: false,
    });
    const body = await readCapped(response);
    return { statusCode: response.status, durationMs: elapsed(), body, retryAfterMs: parseRetryAfter(response.headers.get("retry-after")), error: null };
  } catch (error) {
    const name = (error as Error).name;
    const message = name === "TimeoutError" || name === "AbortError" ? `no response within ${opts.timeoutMs} ms` : (error as Error).message;
    return { statusCode: null, durationMs: elapsed(), body: null, retryAfterMs: null, error: message.slice(0, 500) };
  }
}

async function readCapped(response: Response): Promise<string | null> {
  if (!response.body) return null;
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (size < RESPONSE_CAPTURE_BYTES) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.byteLength;
    }
  } catch {
    // The status is what counts; a body cut off by the timeout or a reset is kept as far as it came.
  } finally {
    await reader.cancel().catch(() => {});
  }
  const bytes = Buffer.concat(chunks).subarray(0, RESPONSE_CAPTURE_BYTES);
  return bytes.length ? bytes.toString("utf8") : null;
}

/** `Retry-After: 120` or `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT` → milliseconds from now. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | null {
  if (!value) return null;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}
