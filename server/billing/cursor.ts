import { AppError } from "../errors";

/** Opaque keyset cursors for newest-first lists: the last item's creation time (ms) and id. */
export function encodeCursor(at: Date, id: string): string {
  return Buffer.from(JSON.stringify([at.toISOString(), id])).toString("base64url");
}

export function decodeCursor(cursor: string): { at: Date; id: string } {
  try {
    const [iso, id] = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8")) as [string, string];
    const at = new Date(iso);
    if (Number.isNaN(at.getTime()) || !/^[0-9a-f-]{36}$/i.test(id)) throw new Error("bad cursor");
    return { at, id };
  } catch {
    throw new AppError("VALIDATION_FAILED", "Invalid cursor", { details: { cursor } });
  }
}
