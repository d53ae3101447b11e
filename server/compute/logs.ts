import { AppError } from "../errors";
import { containerName, statusCode } from "./containers";
import { getHost } from "./hosts";
import { findInstance } from "./instances";
import type { StatsDeps } from "./stats";

const LOGS_TIMEOUT_MS = 5000;
const MAX_LINE_CHARS = 8192;

export type LogLine = { stream: "stdout" | "stderr"; at: string | null; message: string };

/**
 * The last `tail` lines the owner's container wrote, oldest first. Read once
 * (never followed: stack-pitfalls K-5) under a timeout. An instance without a
 * container (not yet provisioned, deleted or vanished) has no lines.
 */
export async function instanceLogs(deps: StatsDeps, ownerId: string | null, instanceId: string, opts: { tail: number }) {
  const instance = await findInstance(deps.db, ownerId, instanceId);
  const host = await getHost(deps.db, instance.hostId);
  const container = deps.engines.get(host.endpoint).getContainer(containerName(deps.config, instance.id));
  let raw: Buffer;
  try {
    raw = (await container.logs({
      stdout: true,
      stderr: true,
      timestamps: true,
      tail: opts.tail,
      follow: false,
      abortSignal: AbortSignal.timeout(LOGS_TIMEOUT_MS),
    } as { follow: false })) as Buffer;
  } catch (error) {
    if (statusCode(error) === 404) return { instanceId, lines: [] as LogLine[] };
    if ((error as Error).name === "AbortError" || (error as Error).name === "TimeoutError") {
      throw new AppError("DEPENDENCY_UNAVAILABLE", "The container engine did not answer in time", { cause: error });
    }
    throw error;
  }
  return { instanceId, lines: demuxLogs(Buffer.isBuffer(raw) ? raw : Buffer.from(raw)).slice(-opts.tail) };
}

/** RFC 3339 with the fraction padded to nanoseconds, so stamps compare as strings. */
function sortableStamp(stamp: string): string {
  const match = /^(.*?)(?:\.(\d+))?Z$/.exec(stamp);
  return match ? `${match[1]}.${(match[2] ?? "").padEnd(9, "0")}Z` : stamp;
}

/**
 * Splits the engine's multiplexed log stream (containers run without a TTY):
 * frames of an 8-byte header (stream type, 3 zero bytes, big-endian length)
 * and a payload, each line prefixed with its RFC 3339 timestamp.
 */
export function demuxLogs(buffer: Buffer): LogLine[] {
  const lines: Array<LogLine & { sortKey: string }> = [];
  const partial: Record<LogLine["stream"], string> = { stdout: "", stderr: "" };
  let offset = 0;
  while (offset + 8 <= buffer.length) {
    const type = buffer[offset];
    const length = buffer.readUInt32BE(offset + 4);
    const payload = buffer.subarray(offset + 8, Math.min(buffer.length, offset + 8 + length)).toString("utf8");
    offset += 8 + length;
    if (type !== 1 && type !== 2) continue;
    const stream = type === 1 ? "stdout" : "stderr";
    const pieces = (partial[stream] + payload).split("\n");
    partial[stream] = pieces.pop() ?? "";
    for (const piece of pieces) lines.push(toLine(stream, piece));
  }
  for (const stream of ["stdout", "stderr"] as const) if (partial[stream]) lines.push(toLine(stream, partial[stream]));
  // A line without a stamp (cut off) keeps its place after the line before it.
  for (let i = 1; i < lines.length; i++) if (!lines[i]!.sortKey) lines[i]!.sortKey = lines[i - 1]!.sortKey;
  // The engine copies stdout and stderr separately, so its file order can interleave them out of time order.
  return lines
    .map((line, index) => ({ line, index }))
    .sort((a, b) => (a.line.sortKey < b.line.sortKey ? -1 : a.line.sortKey > b.line.sortKey ? 1 : a.index - b.index))
    .map(({ line: { sortKey: _, ...line } }) => line);
}

function toLine(stream: LogLine["stream"], text: string): LogLine & { sortKey: string } {
  const space = text.indexOf(" ");
  const stamp = space > 0 ? text.slice(0, space) : "";
  const timed = /^\d{4}-\d{2}-\d{2}T[\d:.]+Z$/.test(stamp);
  const at = timed ? new Date(stamp.replace(/(\.\d{3})\d+Z$/, "$1Z")).toISOString() : null;
  const message = (timed ? text.slice(space + 1) : text).replace(/\r$/, "");
  return { stream, at, message: message.length > MAX_LINE_CHARS ? `${message.slice(0, MAX_LINE_CHARS)}…` : message, sortKey: timed ? sortableStamp(stamp) : "" };
}
