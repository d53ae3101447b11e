/**
 * Image references normalised the way Docker does (distribution/reference,
 * `normalize.go`), so what the allow-list compares is what the engine pulls:
 * the first component is a registry only if it holds `.` or `:` or is
 * `localhost`; otherwise the image is on Docker Hub (`docker.io`), and a
 * one-component Hub name is under `library/`. A missing tag is `latest`.
 * Everything is lower case (Docker refuses upper-case repositories; host
 * names are case-insensitive, so upper case would only make two spellings of
 * one registry). IPv6 registry addresses are not accepted.
 */

export type ImageReference = {
  /** `host[:port]`, e.g. `docker.io`, `127.0.0.1:5000`. */
  domain: string;
  /** Repository path within the registry, e.g. `library/nginx`. */
  path: string;
  tag: string | null;
  /** `sha256:<64 hex>` when pinned. */
  digest: string | null;
};

const DOMAIN_COMPONENT = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;
const PATH_COMPONENT = /^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;
const MAX_NAME = 255;

export class ImageReferenceError extends Error {
  override name = "ImageReferenceError";
}

function parseDomain(domain: string): string {
  const colon = domain.lastIndexOf(":");
  const host = colon >= 0 ? domain.slice(0, colon) : domain;
  const port = colon >= 0 ? domain.slice(colon + 1) : null;
  if (port !== null && (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535)) throw new ImageReferenceError(`${domain}: the port must be a number from 1 to 65535`);
  if (!host.split(".").every((part) => DOMAIN_COMPONENT.test(part))) throw new ImageReferenceError(`${domain} is not a registry host name`);
  // Docker treats the old index name as Docker Hub.
  const canonical = host === "index.docker.io" ? "docker.io" : host;
  return port === null ? canonical : `${canonical}:${port}`;
}

function splitDomain(name: string): { domain: string; path: string } {
  const slash = name.indexOf("/");
  const first = slash < 0 ? "" : name.slice(0, slash);
  if (slash >= 0 && (first.includes(".") || first.includes(":") || first === "localhost")) {
    return { domain: parseDomain(first), path: name.slice(slash + 1) };
  }
  return { domain: "docker.io", path: name };
}

function checkPath(path: string, what: string): void {
  if (!path.split("/").every((part) => PATH_COMPONENT.test(part))) {
    throw new ImageReferenceError(`${what}: repository names are lower-case letters and digits separated by ".", "_", "__", "-" or "/"`);
  }
}

/** Parses and normalises `[registry/]repo[:tag][@sha256:…]`; throws ImageReferenceError saying what is wrong. */
export function parseImageReference(input: string): ImageReference {
  if (input !== input.trim() || !input) throw new ImageReferenceError("an image reference must not be empty or padded with spaces");
  let rest = input;
  let digest: string | null = null;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw new ImageReferenceError(`${input}: a digest is sha256: followed by 64 lower-case hex digits`);
  }
  let tag: string | null = null;
  const lastSlash = rest.lastIndexOf("/");
  const colon = rest.lastIndexOf(":");
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw new ImageReferenceError(`${input}: a tag is letters, digits, "_", "." and "-" (at most 128, not starting with "." or "-")`);
  }
  if (rest !== rest.toLowerCase()) throw new ImageReferenceError(`${input}: the repository name must be lower case`);
  let { domain, path } = splitDomain(rest);
  checkPath(path, input);
  if (domain === "docker.io" && !path.includes("/")) path = `library/${path}`;
  if (`${domain}/${path}`.length > MAX_NAME) throw new ImageReferenceError(`${input}: the name is longer than ${MAX_NAME} characters`);
  return { domain, path, tag: tag ?? (digest ? null : "latest"), digest };
}

/** `domain/path`: the repository, as `docker pull` and `RepoDigests` name it. */
export const repositoryOf = (ref: ImageReference) => `${ref.domain}/${ref.path}`;

/** The normalised reference: `domain/path@digest` when pinned (a digest wins over a tag, as in Docker), else `domain/path:tag`. */
export function formatReference(ref: ImageReference): string {
  return ref.digest ? `${repositoryOf(ref)}@${ref.digest}` : `${repositoryOf(ref)}:${ref.tag}`;
}

export type AllowPattern = { domain: string; pathPrefix: string | null };

/** Parses an allow-list entry, `host[:port][/path-prefix]` (no tag, no digest), normalised like a reference's name. */
export function parseAllowPattern(input: string): AllowPattern {
  const value = input.trim();
  if (!value || value.includes("@") || value !== value.toLowerCase())
    throw new ImageReferenceError(`${input}: an allow-list entry is a lower-case registry host, optionally with a port and a repository prefix`);
  const slash = value.indexOf("/");
  const domain = parseDomain(slash < 0 ? value : value.slice(0, slash));
  const pathPrefix = slash < 0 ? null : value.slice(slash + 1);
  if (pathPrefix !== null) checkPath(pathPrefix, input);
  return { domain, pathPrefix };
}

export const formatAllowPattern = (p: AllowPattern) => (p.pathPrefix ? `${p.domain}/${p.pathPrefix}` : p.domain);

/**
 * Whether the reference is allowed by the pattern: the registry's `host:port`
 * must be the same string (so `localhost:5000` is not `127.0.0.1:5000`, and
 * `docker.io` does not allow `docker.io.evil.example`), and a prefix matches
 * whole path components (`ghcr.io/acme` allows `ghcr.io/acme/web`, not `ghcr.io/acme-evil/web`).
 */
export function allows(pattern: AllowPattern, ref: ImageReference): boolean {
  if (pattern.domain !== ref.domain) return false;
  if (!pattern.pathPrefix) return true;
  return ref.path === pattern.pathPrefix || ref.path.startsWith(`${pattern.pathPrefix}/`);
}

export function isAllowPattern(input: string): boolean {
  try {
    parseAllowPattern(input);
    return true;
  } catch {
    return false;
  }
}
