import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Docker from "dockerode";
import { testRun } from "../harness/env";
import { freePort, projectRoot } from "../harness/process";
import { eventually } from "../harness/server";

/**
 * The production image and compose stack, as an operator starts them: the
 * images built locally from Debian's packages (scripts/build-images.sh,
 * reused when their inputs are unchanged), the stack started with Debian's
 * docker-compose under a project of its own on free host ports, /ready read
 * through it, and everything torn down whatever happened.
 */

const project = `sahary-ci-${testRun.id}`;
let workdir: string;
let envFile: string;
let port: number;
const timings: Record<string, number> = {};

async function run(cmd: string[], opts: { env?: Record<string, string>; timeoutMs?: number } = {}) {
  const child = Bun.spawn(cmd, { cwd: projectRoot, env: { ...process.env, ...opts.env }, stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => child.kill(), opts.timeoutMs ?? 600_000);
  const [code, stdout, stderr] = await Promise.all([child.exited, new Response(child.stdout).text(), new Response(child.stderr).text()]);
  clearTimeout(timer);
  return { code, stdout, stderr };
}

const compose = (...args: string[]) => run(["docker-compose", "-p", project, "-f", "compose.yaml", "--env-file", envFile, ...args], { timeoutMs: 300_000 });

beforeAll(async () => {
  const which = await run(["sh", "-c", "command -v docker-compose && command -v debootstrap"]);
  if (which.code !== 0) throw new Error("docker-compose and debootstrap are required (tests/scripts/provision.sh installs them)");

  let started = performance.now();
  const images = await run(["sh", "scripts/build-images.sh"], { timeoutMs: 1_500_000 });
  timings.imagesSeconds = Math.round((performance.now() - started) / 100) / 10;
  if (images.code !== 0) throw new Error(`building the images failed:\n${images.stderr.slice(-4000)}`);
  const tags = Object.fromEntries(
    images.stdout
      .trim()
      .split("\n")
      .map((line) => line.split("=") as [string, string]),
  );
  expect(Object.keys(tags).sort()).toEqual(["SAHARY_BASE_IMAGE", "SAHARY_IMAGE", "SAHARY_POSTGRES_IMAGE", "SAHARY_PROXY_IMAGE", "SAHARY_REDIS_IMAGE"]);

  workdir = mkdtempSync(join(tmpdir(), "sahary-stack-"));
  envFile = join(workdir, "stack.env");
  port = await freePort();
  const secret = () => crypto.randomUUID().replaceAll("-", "") + crypto.randomUUID().replaceAll("-", "");
  const env = {
    ...tags,
    POSTGRES_PASSWORD: secret(),
    APP_SECRET: secret(),
    PUBLIC_URL: `http://127.0.0.1:${port}`,
    STRIPE_SECRET_KEY: "sk_test_stackStandIn000000000000000000",
    STRIPE_WEBHOOK_SECRET: "whsec_stackStandIn00000000000000000000",
    // Nothing listens there: mail waits in the outbox, which /ready does not depend on.
    SMTP_URL: "smtp://127.0.0.1:9",
    SAHARY_HTTP_PORT: String(port),
    // The proxy shares the host's network: its ports and the traffic-log port must be free ones too.
    INGRESS_DOMAIN: "apps.stack.test",
    INGRESS_HTTP_PORT: String(await freePort()),
    INGRESS_HTTPS_PORT: String(await freePort()),
    SAHARY_TRAFFIC_PORT: String(await freePort()),
    // The stack's workers drive the shared engine: only within a namespace of their own.
    DOCKER_NAMESPACE: `sahary-s${testRun.id}`,
  };
  writeFileSync(
    envFile,
    Object.entries(env)
      .map(([key, value]) => `${key}=${value}\n`)
      .join(""),
  );

  started = performance.now();
  const up = await compose("up", "-d", "--no-build");
  if (up.code !== 0) throw new Error(`docker-compose up failed:\n${up.stderr.slice(-4000)}`);
  timings.upSeconds = Math.round((performance.now() - started) / 100) / 10;
}, 1_800_000);

afterAll(async () => {
  if (envFile) {
    const down = await compose("down", "--volumes", "--remove-orphans", "--timeout", "10");
    if (down.code !== 0) console.error(`docker-compose down failed: ${down.stderr}`);
  }
  if (workdir) rmSync(workdir, { recursive: true, force: true });
  console.error(`production stack timings: ${JSON.stringify(timings)}`);
}, 120_000);

describe("the production stack", () => {
  test("answers /ready through compose with PostgreSQL and Redis up", async () => {
    const started = performance.now();
    const readiness = await eventually(
      async () => {
        try {
          const res = await fetch(`http://127.0.0.1:${port}/ready`);
          return { status: res.status, body: (await res.json()) as { status: string; checks: Record<string, { state: string }> } };
        } catch (error) {
          return { status: 0, body: { status: String(error), checks: {} } };
        }
      },
      (r) => r.status === 200,
      { timeoutMs: 240_000, intervalMs: 1000, what: "the stack's /ready" },
    ).catch(async (error) => {
      const logs = await compose("logs", "--no-color", "--tail", "40");
      throw new Error(`${(error as Error).message}\n${logs.stdout.slice(-6000)}`);
    });
    timings.readySeconds = Math.round((performance.now() - started) / 100) / 10;
    expect(readiness.body.status).toBe("ready");
    expect(readiness.body.checks.database?.state).toBe("up");
    expect(readiness.body.checks.redis?.state).toBe("up");
    expect(readiness.body.checks.docker?.state).toBe("up");
    // The proxy container answers on its admin socket once the workers have programmed it.
    const proxy = await eventually(
      async () => ((await (await fetch(`http://127.0.0.1:${port}/ready`)).json()) as { checks: Record<string, { state: string }> }).checks.proxy?.state,
      (state) => state === "up",
      { timeoutMs: 60_000, intervalMs: 1000, what: "the proxy in /ready" },
    );
    expect(proxy).toBe("up");
  }, 300_000);

  test("runs the API and the workers from the app image, with PostgreSQL and Redis built from Debian's packages", async () => {
    const ps = await compose("ps", "--services", "--filter", "status=running");
    expect(ps.stdout.trim().split("\n").sort()).toEqual(["api", "postgres", "proxy", "redis", "workers"]);
    const docker = new Docker({ socketPath: testRun.dockerSocket });
    const containers = await docker.listContainers({ filters: { label: [`com.docker.compose.project=${project}`] } });
    const images = Object.fromEntries(containers.map((c) => [c.Labels["com.docker.compose.service"], c.Image]));
    expect(images.api).toMatch(/^sahary\/app:[0-9a-f]{12}$/);
    expect(images.workers).toBe(images.api!);
    expect(images.postgres).toMatch(/^sahary\/postgres:15-[0-9a-f]{12}$/);
    expect(images.redis).toMatch(/^sahary\/redis:7-[0-9a-f]{12}$/);
    expect(images.proxy).toMatch(/^sahary\/proxy:2\.6-[0-9a-f]{12}$/);
    // A production process serves what a production process should.
    const metrics = await fetch(`http://127.0.0.1:${port}/metrics`);
    expect(metrics.status).toBe(200);
    const problem = await fetch(`http://127.0.0.1:${port}/trpc/auth.me`);
    expect(problem.status).toBe(401);
    expect(JSON.stringify(await problem.json())).not.toContain("stack");
  }, 60_000);

  test("compose refuses to run without a required secret, naming it", async () => {
    const bare = join(workdir, "bare.env");
    writeFileSync(bare, "SAHARY_HTTP_PORT=1\n");
    const env: Record<string, string> = { ...(process.env as Record<string, string>) };
    for (const name of ["POSTGRES_PASSWORD", "APP_SECRET", "PUBLIC_URL", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "SMTP_URL"]) delete env[name];
    const child = Bun.spawn(["docker-compose", "-p", `${project}-bare`, "-f", "compose.yaml", "--env-file", bare, "config"], { cwd: projectRoot, env, stdout: "pipe", stderr: "pipe" });
    const [code, stderr] = await Promise.all([child.exited, new Response(child.stderr).text()]);
    expect(code).not.toBe(0);
    expect(stderr).toMatch(/set (POSTGRES_PASSWORD|APP_SECRET|PUBLIC_URL|STRIPE_SECRET_KEY|STRIPE_WEBHOOK_SECRET|SMTP_URL)/);
  });
});
