/**
 * A typed Sahary Cloud client, as a customer's TypeScript project would write
 * it: only @trpc/client and the @sahary/client types, no server code.
 *
 *   SAHARY_API=http://127.0.0.1:3000/trpc SAHARY_TOKEN=<session token or API key> node_modules/.bin/bun example.ts
 *
 * It prints one JSON line per step.
 */
import { createTRPCClient, httpBatchLink, TRPCClientError } from "@trpc/client";
import type { AppErrorCode, AppRouter, RouterOutputs } from "@sahary/client";

// Read without Node's or Bun's type packages, so the example needs neither.
const env = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env ?? {};
const url = env.SAHARY_API ?? "http://127.0.0.1:3000/trpc";
const token = env.SAHARY_TOKEN;

const api = createTRPCClient<AppRouter>({
  links: [httpBatchLink({ url, headers: () => (token ? { authorization: `Bearer ${token}` } : {}) })],
});

/** The platform's error code for a failed call, typed as the closed list. */
function appCodeOf(error: unknown): AppErrorCode | null {
  return error instanceof TRPCClientError ? ((error as TRPCClientError<AppRouter>).data?.appCode ?? null) : null;
}

/** What to tell a person for the codes this program expects; the switch is checked against the list. */
function explain(code: AppErrorCode): string {
  switch (code) {
    case "UNAUTHENTICATED":
      return "sign in first (set SAHARY_TOKEN)";
    case "FORBIDDEN":
      return "your role may not do that";
    case "EMAIL_NOT_VERIFIED":
      return "confirm your email address first";
    case "INSUFFICIENT_SCOPE":
      return "the API key lacks the scope";
    default:
      return `failed with ${code}`;
  }
}

function summarise(plans: RouterOutputs["compute"]["plans"]["list"]) {
  return plans.map((plan) => plan.slug);
}

const print = (step: string, value: unknown) => console.log(JSON.stringify({ step, ...(value as object) }));

const me = await api.auth.me.query();
print("me", { email: me.email, role: me.role, status: me.status });

// Two queries, one HTTP request (httpBatchLink).
const [plans, estimate] = await Promise.all([api.compute.plans.list.query(), api.billing.estimate.query()]);
print("catalogue", { plans: summarise(plans), currency: estimate.currency });

// Typed input: the compiler refuses a misspelt field or a wrong type before the server would.
const instances = await api.compute.instances.list.query({ limit: 5 });
print("instances", { count: instances.items.length });

try {
  await api.admin.users.list.query({});
  print("admin", { allowed: true });
} catch (error) {
  const code = appCodeOf(error);
  if (!code) throw error;
  print("admin", { allowed: false, appCode: code, advice: explain(code) });
}
