/** Registries the engine reaches over plain HTTP without configuration: Docker always treats 127.0.0.0/8 as insecure (moby `registry/config.go`). */
export function isLoopbackHost(domain: string): boolean {
  const host = domain.replace(/:\d+$/, "");
  return host === "localhost" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}
