import { describe, expect, test } from "bun:test";
import { usernsOf } from "../../server/compute/hosts";
import { drift } from "../../server/compute/reconcile";
import { mountPathProblem } from "../../server/compute/volumes/mount-path";
import { accountSegments } from "../../server/billing/window";
import { allows, formatReference, parseAllowPattern, parseImageReference } from "../../server/registries/reference";

describe("image references are normalised like Docker's", () => {
  test("Hub short names, registries with ports, tags and digests", () => {
    const digest = `sha256:${"a".repeat(64)}`;
    expect(formatReference(parseImageReference("nginx"))).toBe("docker.io/library/nginx:latest");
    expect(formatReference(parseImageReference("acme/web:1.2"))).toBe("docker.io/acme/web:1.2");
    expect(formatReference(parseImageReference("index.docker.io/acme/web"))).toBe("docker.io/acme/web:latest");
    expect(formatReference(parseImageReference("localhost/web"))).toBe("localhost/web:latest");
    expect(formatReference(parseImageReference("127.0.0.1:5000/acme/web:v1"))).toBe("127.0.0.1:5000/acme/web:v1");
    expect(formatReference(parseImageReference(`ghcr.io/acme/web:v1@${digest}`))).toBe(`ghcr.io/acme/web@${digest}`);
    for (const bad of ["", "Web", "web:", "web@sha256:abc", "-web", "ghcr.io/", "a..b/web", "host:99999/web", "web:-x"]) expect(() => parseImageReference(bad)).toThrow();
  });

  test("the allow-list compares host:port exactly and prefixes by whole path components", () => {
    const ref = (s: string) => parseImageReference(s);
    expect(allows(parseAllowPattern("docker.io"), ref("nginx"))).toBe(true);
    expect(allows(parseAllowPattern("docker.io/library"), ref("acme/web"))).toBe(false);
    expect(allows(parseAllowPattern("localhost:5000"), ref("127.0.0.1:5000/web"))).toBe(false);
    expect(allows(parseAllowPattern("ghcr.io/acme"), ref("ghcr.io/acme-evil/web"))).toBe(false);
    expect(allows(parseAllowPattern("ghcr.io/acme"), ref("ghcr.io/acme/team/web"))).toBe(true);
    expect(allows(parseAllowPattern("docker.io"), ref("docker.io.evil.example/web"))).toBe(false);
  });
});

test("mount paths", () => {
  expect(mountPathProblem("/var/lib/postgresql/data")).toBeNull();
  for (const bad of ["/", "rel", "/proc", "/etc/x", "/a/../b", "/a//b", "/a/", "/tmp"]) expect(mountPathProblem(bad)).not.toBeNull();
});

test("userns-remap is read from docker info", () => {
  expect(usernsOf({ SecurityOptions: ["name=seccomp,profile=default"], DockerRootDir: "/var/lib/docker" })).toEqual({ remap: false, root: null });
  expect(usernsOf({ SecurityOptions: ["name=seccomp,profile=default", "name=userns"], DockerRootDir: "/var/lib/docker/231072.231072" })).toEqual({ remap: true, root: { uid: 231072, gid: 231072 } });
});

test("drift: SIGTERM and exit 0 are stopped, a restarting container is up, a crash after restarts is an error", () => {
  const info = (state: Record<string, unknown>, restarts = 0) =>
    ({ State: { Running: false, Paused: false, Restarting: false, OOMKilled: false, ExitCode: 0, Error: "", ...state }, RestartCount: restarts }) as never;
  expect(drift({ state: "running" }, info({ ExitCode: 143 }))?.to).toBe("stopped");
  expect(drift({ state: "running" }, info({ ExitCode: 0 }))?.to).toBe("stopped");
  expect(drift({ state: "running" }, info({ Restarting: true, ExitCode: 3 }))).toBeNull();
  expect(drift({ state: "running" }, info({ ExitCode: 3 }, 3))).toEqual({ to: "error", reason: "container died (exit code 3, after 3 automatic restarts)" });
  expect(drift({ state: "running" }, info({ ExitCode: 137, OOMKilled: true }))?.reason).toContain("memory limit");
});

test("a resize splits the window at the moment it took effect", () => {
  const H = 3_600_000;
  const from = Date.UTC(2026, 0, 1, 10);
  const { hours, planSeq } = accountSegments(from, from + H, { state: "running", reason: "requested", startSeq: 1, planSeq: 0 }, [], [{ seq: 1, at: new Date(from + 15 * 60_000) }]);
  expect(planSeq).toBe(1);
  expect(hours.map((h) => [h.planSeq, h.runningMs])).toEqual([
    [0, 15 * 60_000],
    [1, 45 * 60_000],
  ]);
});
