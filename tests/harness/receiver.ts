/**
 * A real HTTP receiver for outgoing webhooks (Bun.serve on 127.0.0.1): it
 * records every request as it arrived (raw body and headers, for signature
 * checks), answers with what the test's responder says (204 by default), and
 * keeps what an idempotent receiver would: how often each `webhook-id` came.
 */
export type ReceivedWebhook = { path: string; headers: Record<string, string>; body: string; at: number };
export type Responder = (request: ReceivedWebhook, nthForPath: number) => Response | Promise<Response>;

export async function startWebhookReceiver(opts: { respond?: Responder; tls?: { cert: string; key: string } } = {}) {
  const received: ReceivedWebhook[] = [];
  let respond: Responder = opts.respond ?? (() => new Response(null, { status: 204 }));
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    ...(opts.tls ? { tls: opts.tls } : {}),
    async fetch(req) {
      const request = { path: new URL(req.url).pathname, headers: Object.fromEntries(req.headers.entries()), body: await req.text(), at: Date.now() };
      received.push(request);
      return respond(request, received.filter((r) => r.path === request.path).length);
    },
  });
  const origin = `${opts.tls ? "https" : "http"}://127.0.0.1:${server.port}`;
  return {
    port: server.port!,
    url: (path = "/hooks") => `${origin}${path}`,
    received,
    /** Requests that reached `path`. */
    at: (path: string) => received.filter((r) => r.path === path),
    /** How many times each webhook-id reached `path` (a receiver dedupes on these). */
    idsAt(path: string): Map<string, number> {
      const counts = new Map<string, number>();
      for (const r of received.filter((r) => r.path === path)) counts.set(r.headers["webhook-id"]!, (counts.get(r.headers["webhook-id"]!) ?? 0) + 1);
      return counts;
    },
    setResponder(next: Responder) {
      respond = next;
    },
    close: () => server.stop(true),
  };
}

export type WebhookReceiver = Awaited<ReturnType<typeof startWebhookReceiver>>;
