import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { testRun } from "./env";
import { freePort } from "./process";

let counter = 0;

async function sh(argv: string[], env: Record<string, string> = {}): Promise<string> {
  const child = Bun.spawn(argv, { env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  if (code !== 0) throw new Error(`${argv.join(" ")} failed (${code}): ${err.trim().slice(-500)}`);
  return out;
}

export type TestRegistry = {
  /** `127.0.0.1:<port>` */
  host: string;
  /** Tags a local image as `<host>/<name>` and pushes it; returns the pushed reference. */
  push(localImage: string, name: string): Promise<string>;
  stop(): Promise<void>;
};

/**
 * Debian's docker-registry, run by the test on a free loopback port with its
 * own storage folder and no auth (its packaged configuration listens on all
 * interfaces and demands htpasswd: unusable here). The engine treats
 * 127.0.0.0/8 registries as plain HTTP without configuration.
 */
export async function startTestRegistry(): Promise<TestRegistry> {
  counter += 1;
  const dir = `${testRun.dataDir}/registry-${counter}`;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(`${dir}/storage`, { recursive: true });
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  writeFileSync(`${dir}/config.yml`, `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${dir}/storage\n  delete:\n    enabled: true\nhttp:\n  addr: ${host}\n`);
  const child = Bun.spawn(["docker-registry", "serve", `${dir}/config.yml`], { stdout: "ignore", stderr: Bun.file(`${dir}/registry.log`) });
  for (let waited = 0; ; waited += 100) {
    const ok = await fetch(`http://${host}/v2/`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ok) break;
    if (child.exitCode !== null || waited > 15_000) throw new Error(`docker-registry did not start (exit ${child.exitCode}); see ${dir}/registry.log`);
    await Bun.sleep(100);
  }
  const pushed: string[] = [];
  return {
    host,
    async push(localImage, name) {
      const target = `${host}/${name}`;
      await sh(["docker", "tag", localImage, target]);
      pushed.push(target);
      await sh(["docker", "push", "--quiet", target]);
      return target;
    },
    async stop() {
      child.kill("SIGTERM");
      await child.exited;
      // The tags this registry's pushes left on the engine (the images themselves stay, shared by content hash).
      for (const tag of pushed) await sh(["docker", "rmi", "--no-prune", tag]).catch(() => undefined);
      // And the references the platform pulled by digest from it.
      const pulled = (await sh(["docker", "image", "ls", "--digests", "--format", "{{.Repository}}@{{.Digest}}", "--filter", `reference=${host}/*`]).catch(() => ""))
        .split("\n")
        .filter((r) => r.includes("@sha256:"));
      for (const reference of pulled) await sh(["docker", "rmi", "--no-prune", reference]).catch(() => undefined);
    },
  };
}

/**
 * A test image built once per content: the tag carries a hash of its
 * Dockerfile and files, so a run that finds it on the engine reuses it and
 * the suite stays fast. Built with the legacy builder (Docker 20.10, no BuildKit) from the local busybox image.
 */
export async function testImage(name: string, files: Record<string, string>): Promise<string> {
  const hash = createHash("sha256")
    .update(JSON.stringify(Object.entries(files).sort()))
    .digest("hex")
    .slice(0, 16);
  const tag = `sahary-test/${name}:${hash}`;
  const present = await sh(["docker", "image", "inspect", tag]).then(
    () => true,
    () => false,
  );
  if (present) return tag;
  const dir = `${testRun.dataDir}/build-${name}-${hash}`;
  mkdirSync(dir, { recursive: true });
  for (const [file, content] of Object.entries(files)) writeFileSync(`${dir}/${file}`, content);
  await sh(["docker", "build", "--quiet", "-t", tag, dir], { DOCKER_BUILDKIT: "0" });
  rmSync(dir, { recursive: true, force: true });
  return tag;
}

/** The images the workload tests run: a small web app with a VOLUME line, and one too big for a tight IMAGE_MAX_BYTES. */
export const TEST_IMAGES = {
  app: {
    Dockerfile: [
      "FROM sahary/busybox:1.35",
      // A root USER and a VOLUME line: neither may escalate anything.
      "USER 0",
      "VOLUME /data",
      "COPY index.html /site/index.html",
      'CMD ["/bin/sh", "-c", "echo default command; sleep 3600"]',
    ].join("\n"),
    "index.html": "hello from an own image\n",
  },
  big: {
    Dockerfile: ["FROM sahary/busybox:1.35", "RUN head -c 12582912 /dev/urandom > /blob"].join("\n"),
  },
};
