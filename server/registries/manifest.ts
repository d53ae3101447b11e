import { createHash } from "node:crypto";
import { isLoopbackHost } from "./hosts";
import type { ImageReference } from "./reference";

/**
 * Reads an image's manifest from its registry (Docker Registry HTTP API v2)
 * before anything is pulled, so an oversized image is refused without
 * spending the host's bandwidth and disk: the compressed size is the
 * manifest's config plus its layers (distribution `manifest-v2-2.md`). For a
 * multi-platform index, the entry for the engine's platform is read.
 */

const ACCEPT = [
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.v2+json",
].join(", ");
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

export type RegistryFailure = "not_found" | "unreachable" | "denied" | "invalid";

export class RegistryError extends Error {
  override name = "RegistryError";
  constructor(
    readonly kind: RegistryFailure,
    message: string,
  ) {
    super(message);
  }
}

export type RemoteImage = {
  /** The digest to pull (the index's when the image is multi-platform: the engine picks its platform from it). */
  digest: string;
  /** Config and layers of the engine's platform, compressed, as the registry will send them. */
  compressedBytes: number;
  layers: number;
};

export type RegistryAccess = { insecure: readonly string[]; platform: { os: string; architecture: string }; timeoutMs: number; signal?: AbortSignal };

/** Plain HTTP for loopback registries (as the engine allows them by default) and REGISTRY_INSECURE; TLS for every other. */
export function registryBase(domain: string, insecure: readonly string[]): string {
  const host = domain === "docker.io" ? "registry-1.docker.io" : domain;
  const plain = isLoopbackHost(domain) || insecure.includes(domain) || insecure.includes(domain.replace(/:\d+$/, ""));
  return `${plain ? "http" : "https"}://${host}`;
}

export async function inspectRemoteImage(ref: ImageReference, access: RegistryAccess): Promise<RemoteImage> {
  const base = registryBase(ref.domain, access.insecure);
  const session = { token: null as string | null };
  const first = await getManifest(base, ref, ref.digest ?? ref.tag!, access, session);
  const type = String(first.body.mediaType ?? first.contentType);
  if (/manifest\.list|image\.index/.test(type) || Array.isArray(first.body.manifests)) {
    const entries = (first.body.manifests ?? []) as Array<{ digest?: string; platform?: { os?: string; architecture?: string } }>;
    const match = entries.find((m) => m.platform?.os === access.platform.os && m.platform?.architecture === access.platform.architecture);
    if (!match?.digest) throw new RegistryError("not_found", `${ref.domain}/${ref.path} has no image for ${access.platform.os}/${access.platform.architecture}`);
    const platform = await getManifest(base, ref, match.digest, access, session);
    return { digest: first.digest, ...sizeOf(platform.body) };
  }
  return { digest: first.digest, ...sizeOf(first.body) };
}

function sizeOf(manifest: Record<string, unknown>): { compressedBytes: number; layers: number } {
  const config = manifest.config as { size?: unknown } | undefined;
  const layers = manifest.layers as Array<{ size?: unknown }> | undefined;
  if (!config || !Array.isArray(layers) || typeof config.size !== "number" || layers.some((l) => typeof l.size !== "number")) {
    throw new RegistryError("invalid", "the registry sent a manifest without sizes (schema 1 manifests are not supported)");
  }
  return { compressedBytes: config.size + layers.reduce((sum, l) => sum + (l.size as number), 0), layers: layers.length };
}

async function getManifest(base: string, ref: ImageReference, reference: string, access: RegistryAccess, session: { token: string | null }) {
  const url = `${base}/v2/${ref.path}/manifests/${reference}`;
  let response = await request(url, access, session.token);
  if (response.status === 401 && !session.token) {
    session.token = await bearerToken(response.headers.get("www-authenticate"), base, ref, access);
    response = await request(url, access, session.token);
  }
  if (response.status === 404) throw new RegistryError("not_found", `${ref.domain}/${ref.path}:${reference} was not found in the registry (manifest unknown)`);
  if (response.status === 401 || response.status === 403)
    throw new RegistryError("denied", `the registry refused access to ${ref.domain}/${ref.path} (HTTP ${response.status}); only public images can be pulled`);
  if (!response.ok) throw new RegistryError("unreachable", `the registry answered HTTP ${response.status} for ${ref.domain}/${ref.path}`);
  const bytes = Buffer.from(await response.arrayBuffer());
  if (bytes.length > MAX_MANIFEST_BYTES) throw new RegistryError("invalid", "the registry sent a manifest over 4 MiB");
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(bytes.toString("utf8"));
  } catch {
    throw new RegistryError("invalid", "the registry sent a manifest that is not JSON");
  }
  const digest = response.headers.get("docker-content-digest") ?? `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
  if (!/^sha256:[a-f0-9]{64}$/.test(digest)) throw new RegistryError("invalid", "the registry sent an unusable manifest digest");
  return { body, digest, contentType: response.headers.get("content-type") ?? "" };
}

async function request(url: string, access: RegistryAccess, token: string | null): Promise<Response> {
  const signal = access.signal ? AbortSignal.any([access.signal, AbortSignal.timeout(access.timeoutMs)]) : AbortSignal.timeout(access.timeoutMs);
  try {
    return await fetch(url, { headers: { accept: ACCEPT, ...(token ? { authorization: `Bearer ${token}` } : {}) }, redirect: "follow", signal });
  } catch (error) {
    throw new RegistryError("unreachable", `the registry at ${new URL(url).host} could not be reached: ${(error as Error).message}`);
  }
}

/**
 * The anonymous pull token of the registry's token service (the
 * `WWW-Authenticate: Bearer realm=…` challenge). The realm must be HTTPS, or
 * the registry's own host when the registry itself is plain HTTP, so an
 * allowed registry cannot send the platform to an arbitrary address.
 */
async function bearerToken(challenge: string | null, base: string, ref: ImageReference, access: RegistryAccess): Promise<string> {
  const params = Object.fromEntries([...(challenge ?? "").matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1]!.toLowerCase(), m[2]!]));
  if (!challenge?.toLowerCase().startsWith("bearer") || !params.realm)
    throw new RegistryError("denied", `the registry asks for credentials for ${ref.domain}/${ref.path}; only public images can be pulled`);
  const realm = new URL(params.realm);
  if (realm.protocol !== "https:" && realm.host !== new URL(base).host) throw new RegistryError("invalid", "the registry's token service is not HTTPS");
  realm.searchParams.set("scope", params.scope ?? `repository:${ref.path}:pull`);
  if (params.service) realm.searchParams.set("service", params.service);
  const response = await request(realm.toString(), access, null);
  if (!response.ok) throw new RegistryError("denied", `the registry's token service refused an anonymous pull of ${ref.domain}/${ref.path} (HTTP ${response.status})`);
  const body = (await response.json().catch(() => ({}))) as { token?: string; access_token?: string };
  const token = body.token ?? body.access_token;
  if (!token) throw new RegistryError("invalid", "the registry's token service sent no token");
  return token;
}
