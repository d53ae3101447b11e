import type { TRPCProcedureType } from "@trpc/server";

/** A string as one single-quoted shell word. */
export function shellQuote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

/**
 * A curl command for one procedure, for the shell variables the API reference
 * asks for (`API`, the /trpc base URL, and `TOKEN`). Query input goes through
 * `-G --data-urlencode`, so curl encodes it and never reads `{}[]` in a URL as
 * a glob; mutation input is the raw body (`--data-raw` never treats a leading
 * `@` as a file name). A subscription's answer is a stream of server-sent
 * events, so its curl reads unbuffered (`-N`).
 */
export function curlExample(call: { path: string; type: TRPCProcedureType; input: unknown; authenticated: boolean }): string {
  const lines: string[] = [];
  const auth = call.authenticated ? ` \\\n  -H "Authorization: Bearer $TOKEN"` : "";
  if (call.type === "mutation") {
    lines.push(`curl -s -X POST "$API/${call.path}"${auth} \\`, `  -H 'content-type: application/json'`);
    if (call.input !== undefined) lines[lines.length - 1] += ` \\\n  --data-raw ${shellQuote(JSON.stringify(call.input))}`;
  } else if (call.input === undefined) {
    lines.push(`curl -s${call.type === "subscription" ? "N" : ""} "$API/${call.path}"${auth}`);
  } else {
    lines.push(`curl -s${call.type === "subscription" ? "N" : ""}G "$API/${call.path}"${auth} \\`, `  --data-urlencode ${shellQuote(`input=${JSON.stringify(call.input)}`)}`);
  }
  return lines.join("\n");
}
