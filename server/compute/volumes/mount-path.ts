/**
 * Where a volume may be mounted in a container: an absolute, normalised path
 * (no `.`, `..`, empty or trailing segments) of plain segments, outside the
 * folders the engine and the kernel own or the image's programs live in.
 * Mounting over /proc, /sys or /dev would hide what the engine masks or
 * provides; /etc holds the engine's hosts/resolv.conf mounts; /tmp is the
 * platform's capped scratch space; an empty volume over /bin, /lib or /usr
 * would only hide the image's programs.
 */
const RESERVED = ["/proc", "/sys", "/dev", "/etc", "/tmp", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/usr", "/boot"];
const SEGMENT = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$/;
const MAX_DEPTH = 16;

export function mountPathProblem(path: string): string | null {
  if (!path.startsWith("/")) return "must be an absolute path";
  if (path === "/") return "must not be / (the root is read-only by design)";
  if (path.length > 200) return "must be at most 200 characters";
  const segments = path.slice(1).split("/");
  if (segments.length > MAX_DEPTH) return `must be at most ${MAX_DEPTH} folders deep`;
  if (segments.some((s) => s === "" || s === "." || s === "..")) return "must be normalised: no empty, . or .. segments and no trailing /";
  if (!segments.every((s) => SEGMENT.test(s))) return "segments are letters, digits, '.', '_' and '-' (not starting with '.' or '-')";
  const reserved = RESERVED.find((r) => path === r || path.startsWith(`${r}/`));
  if (reserved) return `must not be ${reserved} or inside it`;
  return null;
}

/** Two mounts of one instance must not be the same folder or one inside the other. */
export function overlapping(paths: readonly string[]): [string, string] | null {
  for (let i = 0; i < paths.length; i++) {
    for (let j = i + 1; j < paths.length; j++) {
      const [a, b] = [paths[i]!, paths[j]!];
      if (a === b || a.startsWith(`${b}/`) || b.startsWith(`${a}/`)) return [a, b];
    }
  }
  return null;
}
