import { describe, expect, test } from "bun:test";
import { loadConfig } from "../../server/config";

describe("compute configuration", () => {
  test("defaults to the local engine, overcommitted CPU and modest quotas", () => {
    const { compute } = loadConfig({ DOCKER_SOCKET: "/run/docker.sock" });
    expect(compute.hosts).toEqual([{ name: "local", endpoint: "unix:///run/docker.sock" }]);
    expect(compute.overcommit).toEqual({ cpu: 4, memory: 1 });
    expect(compute.defaultQuota).toEqual({ maxInstances: 10, maxCpuMillis: 4000, maxMemoryMb: 8192, maxVolumes: 10, maxVolumeMb: 100 * 1024 });
    expect(compute.imagePull).toBe("missing");
  });

  test("DOCKER_HOSTS names several engines", () => {
    const { compute } = loadConfig({ DOCKER_HOSTS: "solar-1=unix:///var/run/docker.sock, solar-2=tcp://10.0.0.2:2375" });
    expect(compute.hosts).toEqual([
      { name: "solar-1", endpoint: "unix:///var/run/docker.sock" },
      { name: "solar-2", endpoint: "tcp://10.0.0.2:2375" },
    ]);
  });

  test("invalid or duplicated engines are refused, naming the variable", () => {
    expect(() => loadConfig({ DOCKER_HOSTS: "nonsense" })).toThrow(/DOCKER_HOSTS/);
    expect(() => loadConfig({ DOCKER_HOSTS: "a=ftp://x:1" })).toThrow(/DOCKER_HOSTS/);
    expect(() => loadConfig({ DOCKER_HOSTS: "a=unix:///x.sock,a=unix:///y.sock" })).toThrow(/DOCKER_HOSTS/);
  });

  test("fractional vCPU quotas are kept in thousandths", () => {
    expect(loadConfig({ QUOTA_MAX_VCPUS: "1.5" }).compute.defaultQuota.maxCpuMillis).toBe(1500);
    expect(() => loadConfig({ QUOTA_MAX_VCPUS: "zero" })).toThrow(/QUOTA_MAX_VCPUS/);
  });

  test("a Docker call must be allowed to outlive the stop grace period", () => {
    expect(() => loadConfig({ INSTANCE_STOP_TIMEOUT_S: "60", DOCKER_TIMEOUT_MS: "30000" })).toThrow(/DOCKER_TIMEOUT_MS/);
  });
});
