import type { Readable } from "node:stream";
import { AppError } from "../errors";
import { containerName, engineUnavailable, statusCode } from "./containers";
import { getHost, hostUnreachable } from "./hosts";
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
  if (host.status !== "active") throw hostUnreachable(host);
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
    if (engineUnavailable(error)) throw new AppError("DEPENDENCY_UNAVAILABLE", "The container engine did not answer", { cause: error });
    throw error;
  }
  return { instanceId, lines: demuxLogs(Buffer.isBuffer(raw) ? raw : Buffer.from(raw)).slice(-opts.tail) };
}

let openFollows = 0;
/** Log streams being followed by this process right now (each holds a connection to an engine). */
export const openLogFollows = () => openFollows;

/**
 * Follows the owner's container's logs as they are written, for a tRPC
 * subscription. Bounded: it ends after `maxLines` lines, LOGS_FOLLOW_MAX_BYTES
 * or LOGS_FOLLOW_MAX_SECONDS, whichever comes first; and when the client
 * leaves (`signal`), the engine's follow stream is destroyed at once, even if
 * the container is silent (a follow stream may never end by itself:
 * stack-pitfalls K-5). An instance without a container ends at once.
 */
export async function* followLogs(deps: StatsDeps, ownerId: string, instanceId: string, opts: { tail: number; maxLines: number; signal: AbortSignal | undefined }): AsyncGenerator<LogLine> {
  const instance = await findInstance(deps.db, ownerId, instanceId);
  const host = await getHost(deps.db, instance.hostId);
  if (host.status !== "active") throw hostUnreachable(host);
  const { maxSeconds, maxBytes } = deps.config.compute.logsFollow;
  const container = deps.engines.get(host.endpoint).getContainer(containerName(deps.config, instance.id));
  let stream: Readable;
  try {
    stream = (await container.logs({ stdout: true, stderr: true, timestamps: true, follow: true, tail: opts.tail })) as unknown as Readable;
  } catch (error) {
    if (statusCode(error) === 404) return;
    if (engineUnavailable(error)) throw new AppError("DEPENDENCY_UNAVAILABLE", "The container engine did not answer", { cause: error });
    throw error;
  }
  openFollows += 1;
  const stop = () => stream.destroy();
  opts.signal?.addEventListener("abort", stop, { once: true });
  const timer = setTimeout(stop, maxSeconds * 1000);
  const frames = new FrameReader();
  let lines = 0;
  let bytes = 0;
  try {
    for await (const chunk of stream) {
      for (const line of frames.push(chunk as Buffer)) {
        yield line;
        lines += 1;
        bytes += line.message.length;
        if (lines >= opts.maxLines || bytes >= maxBytes) return;
      }
    }
  } catch (error) {
    // Destroyed on purpose (the client left, the time bound): the subscription just ends.
    if (!opts.signal?.aborted && !stream.destroyed) throw error;
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener("abort", stop);
    stream.destroy();
    openFollows -= 1;
  }
}

/** Incremental demultiplexer for a followed stream: frames may be split across chunks, lines across frames. */
class FrameReader {
  private buffer: Buffer = Buffer.alloc(0);
  private partial: Record<LogLine["stream"], string> = { stdout: "", stderr: "" };

  push(chunk: Buffer): LogLine[] {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
    const out: LogLine[] = [];
    while (this.buffer.length >= 8) {
      const length = this.buffer.readUInt32BE(4);
      if (this.buffer.length < 8 + length) break;
      const type = this.buffer[0];
      const payload = this.buffer.subarray(8, 8 + length).toString("utf8");
      this.buffer = this.buffer.subarray(8 + length);
      if (type !== 1 && type !== 2) continue;
      const stream = type === 1 ? "stdout" : "stderr";
      const pieces = (this.partial[stream] + payload).split("\n");
      this.partial[stream] = pieces.pop() ?? "";
      for (const piece of pieces) {
        const { sortKey: _, ...line } = toLine(stream, piece);
        out.push(line);
      }
    }
    return out;
  }
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
