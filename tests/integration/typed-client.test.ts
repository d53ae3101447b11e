import { afterAll, beforeAll, expect, test } from "bun:test";
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { projectRoot } from "../harness/process";
import { startTestServer, type TestServer } from "../harness/server";
import { createUserWithSession } from "../harness/users";

/**
 * The typed client from a customer's side: a fresh TypeScript project (no Bun
 * types, no server sources, no server dependencies) installs @trpc/client,
 * @trpc/server and the built @sahary/client types, type-checks the example
 * in client/example, and runs it against a live server.
 */

let app: TestServer;
let project: string;

async function run(cmd: string[], opts: { cwd: string; env?: Record<string, string> }) {
  const child = Bun.spawn(cmd, { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdout: "pipe", stderr: "pipe" });
  const [code, stdout, stderr] = await Promise.all([child.exited, new Response(child.stdout).text(), new Response(child.stderr).text()]);
  return { code, stdout, stderr };
}

beforeAll(async () => {
  const built = await run([join(projectRoot, "node_modules/.bin/bun"), "client/build.ts"], { cwd: projectRoot });
  expect(built.stderr).toBe("");
  expect(built.code).toBe(0);

  project = mkdtempSync(join(tmpdir(), "sahary-client-"));
  cpSync(join(projectRoot, "client/example/example.ts"), join(project, "example.ts"));
  cpSync(join(projectRoot, "client/example/tsconfig.json"), join(project, "tsconfig.json"));
  writeFileSync(join(project, "package.json"), JSON.stringify({ type: "module" }));
  // What `npm install` would put there: the two tRPC packages (copied, so nothing resolves back into the repository) and the built types.
  for (const pkg of ["@trpc/client", "@trpc/server"]) cpSync(join(projectRoot, "node_modules", pkg), join(project, "node_modules", pkg), { recursive: true, dereference: true });
  mkdirSync(join(project, "node_modules/@sahary/client"), { recursive: true });
  cpSync(join(projectRoot, "client/package.json"), join(project, "node_modules/@sahary/client/package.json"));
  cpSync(join(projectRoot, "client/dist"), join(project, "node_modules/@sahary/client/dist"), { recursive: true });

  app = await startTestServer();
}, 180_000);
afterAll(async () => {
  await app?.close();
  if (project) rmSync(project, { recursive: true, force: true });
});

const tsc = () => run([join(projectRoot, "node_modules/.bin/tsc"), "-p", project], { cwd: project });

test("the example type-checks in a plain TypeScript project", async () => {
  const result = await tsc();
  expect(result.stdout + result.stderr).toBe("");
  expect(result.code).toBe(0);
}, 120_000);

test("the types are real: wrong input, a made-up error code and a wrong result field fail to compile", async () => {
  writeFileSync(
    join(project, "mistakes.ts"),
    `import { createTRPCClient, httpBatchLink, TRPCClientError } from "@trpc/client";
import type { AppErrorCode, AppRouter } from "@sahary/client";
const api = createTRPCClient<AppRouter>({ links: [httpBatchLink({ url: "http://127.0.0.1:1/trpc" })] });
export async function mistakes(error: TRPCClientError<AppRouter>) {
  await api.auth.login.mutate({ email: 42, password: "x" });
  const code: AppErrorCode = "NOT_A_CODE";
  const fromError: "NOT_A_CODE" | undefined = error.data?.appCode;
  const instance = await api.compute.instances.get.query({ id: "x" });
  const state: number = instance.state;
  await api.compute.instances.nonsense.query();
  return [code, fromError, state];
}
`,
  );
  try {
    const result = await tsc();
    expect(result.code).not.toBe(0);
    const errors = result.stdout.split("\n").filter((line) => line.startsWith("mistakes.ts("));
    // One error per mistake, on lines 5 to 10 (and none in example.ts).
    expect(errors.map((line) => Number(/^mistakes\.ts\((\d+),/.exec(line)![1]))).toEqual([5, 6, 7, 9, 10]);
    expect(result.stdout).not.toContain("example.ts(");
  } finally {
    rmSync(join(project, "mistakes.ts"));
  }
}, 120_000);

test("the example runs against a live server", async () => {
  const { user, token } = await createUserWithSession(app.services, { role: "customer" });
  const result = await run([join(projectRoot, "node_modules/.bin/bun"), "example.ts"], { cwd: project, env: { SAHARY_API: `${app.url}/trpc`, SAHARY_TOKEN: token } });
  expect(result.stderr).toBe("");
  expect(result.code).toBe(0);
  const steps = Object.fromEntries(
    result.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .map((line) => [line.step, line]),
  );
  expect(steps.me).toMatchObject({ email: user.email, role: "customer", status: "active" });
  expect((steps.catalogue as { plans: string[] }).plans).toContain("nano");
  expect(steps.instances).toEqual({ step: "instances", count: 0 });
  expect(steps.admin).toEqual({ step: "admin", allowed: false, appCode: "FORBIDDEN", advice: "your role may not do that" });
}, 60_000);
