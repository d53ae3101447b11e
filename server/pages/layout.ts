import { createHash } from "node:crypto";

/**
 * The frame of the small pages the platform's emails link to: one column, no
 * external assets, and a CSP allowing exactly this page's inline style and
 * script (by hash) and requests to this origin. The token such a page reads
 * arrives in the URL fragment, which browsers never send to the server, so it
 * reaches no access log and no Referer.
 */

const STYLE = `
:root{color-scheme:light dark;font-family:system-ui,-apple-system,"Segoe UI",sans-serif;line-height:1.5}
body{margin:0;display:flex;min-height:100vh;align-items:center;justify-content:center;background:#f6f4ef}
main{max-width:26rem;width:100%;margin:1rem;padding:2rem;border-radius:12px;background:#fff;box-shadow:0 1px 4px #0002}
h1{font-size:1.35rem;margin:0 0 1rem}
label{display:block;margin:.75rem 0 .25rem;font-weight:600}
input{box-sizing:border-box;width:100%;padding:.55rem;font:inherit;border:1px solid #bbb;border-radius:6px}
button{margin-top:1rem;width:100%;padding:.6rem;font:inherit;font-weight:600;border:0;border-radius:6px;background:#e58a00;color:#fff;cursor:pointer}
button:disabled{opacity:.6;cursor:default}
[role=status]{margin:1rem 0 0}
.error{color:#b00020}
.ok{color:#1b6e2d}
ul{margin:.25rem 0 0;padding-left:1.2rem}
footer{margin-top:1.5rem;font-size:.85rem;color:#666}
@media (prefers-color-scheme:dark){body{background:#15140f}main{background:#222;box-shadow:none}input{background:#111;color:#eee;border-color:#555}footer{color:#999}.error{color:#ff8a8a}.ok{color:#7ddc8f}}
`;

/** Shared by every page's script: the token from the fragment (then wiped from the address bar), a tRPC mutation call, messages. */
const COMMON_SCRIPT = `
const takeToken = () => {
  const token = new URLSearchParams(location.hash.slice(1)).get("token");
  // Keep the token out of the address bar, history and bookmarks once read.
  history.replaceState(null, "", location.pathname + location.search);
  return token && /^[A-Za-z0-9_-]{1,128}$/.test(token) ? token : null;
};
const mutate = async (procedure, input) => {
  const res = await fetch("/trpc/" + procedure, { method: "POST", headers: { "content-type": "application/json" }, credentials: "same-origin", body: JSON.stringify(input) });
  const body = await res.json().catch(() => null);
  if (body && body.result) return { ok: true, data: body.result.data };
  return { ok: false, code: body && body.error && body.error.data ? body.error.data.appCode : "INTERNAL", message: body && body.error ? body.error.message : "", details: body && body.error && body.error.data ? body.error.data.details : undefined };
};
const show = (kind, text, items) => {
  const status = document.getElementById("status");
  status.className = kind;
  status.textContent = text;
  if (items && items.length) {
    const list = document.createElement("ul");
    for (const item of items) { const li = document.createElement("li"); li.textContent = item; list.append(li); }
    status.append(list);
  }
};
const retryText = (details) => details && details.retryAfterSeconds ? " Try again in " + Math.max(1, Math.ceil(details.retryAfterSeconds / 60)) + " minute(s)." : " Try again later.";
`;

const sha256 = (text: string) => `'sha256-${createHash("sha256").update(text).digest("base64")}'`;

export type Page = { title: string; body: string; script: string };

/** The HTML and its CSP; built once per page at start-up (the hashes are constant). */
export function renderPage(page: Page): { html: string; csp: string } {
  const script = COMMON_SCRIPT + page.script;
  const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<meta name="robots" content="noindex">
<title>${page.title} · Sahary Cloud</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>
<main>
<h1>${page.title}</h1>
${page.body}
<p id="status" role="status" aria-live="polite"></p>
<noscript><p class="error">This page needs JavaScript to talk to the platform.</p></noscript>
<footer>Sahary Cloud, hosting that runs on sunlight</footer>
</main>
<script>${script}</script>
</body>
</html>`;
  const csp = [
    "default-src 'none'",
    `script-src ${sha256(script)}`,
    `style-src ${sha256(STYLE)}`,
    "img-src data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join("; ");
  return { html, csp };
}
