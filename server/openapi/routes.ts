import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { Scalar } from "@scalar/hono-api-reference";
import type { AnyTRPCRouter } from "@trpc/server";
import { Hono } from "hono";
import pkg from "../../package.json";
import type { AppEnv } from "../app";
import type { Logger } from "../log";
import { listProcedures } from "../procedures";
import { buildOpenApiDocument, type OpenApiBuild } from "./document";

const SCALAR_FILE = fileURLToPath(new URL("./vendor/scalar-api-reference.js", import.meta.url));
const SCALAR_VERSION = readFileSync(fileURLToPath(new URL("./vendor/scalar-api-reference.source", import.meta.url)), "utf8").split(" ")[1]!;
const SCALAR_PATH = `/docs/scalar-${SCALAR_VERSION}.js`;

/** The vendored bundle, read (and compressed) on first use only: most processes never serve /docs. */
let scalarBundle: { raw: Uint8Array; gzip: Uint8Array } | undefined;
function bundle() {
  if (!scalarBundle) {
    const raw = readFileSync(SCALAR_FILE);
    scalarBundle = { raw, gzip: gzipSync(raw, { level: 9 }) };
  }
  return scalarBundle;
}

/**
 * GET /openapi.json (built from the router on first request, then kept) and
 * the browsable reference at GET /docs: Scalar, served entirely from this
 * server (its bundle is vendored; fonts, telemetry, AI agent and the request
 * proxy are off), under a CSP that lets the page reach only this origin and
 * the API's.
 */
export function openApiRoutes(opts: { router: AnyTRPCRouter; publicUrl: string; log: Logger }) {
  let built: { build: OpenApiBuild; json: string } | undefined;
  const document = () => {
    if (!built) {
      const build = buildOpenApiDocument(listProcedures(opts.router), { serverUrl: opts.publicUrl, version: pkg.version });
      if (build.problems.length) opts.log.warn("OpenAPI document has problems", { problems: build.problems });
      built = { build, json: JSON.stringify(build.document) };
    }
    return built;
  };
  const apiOrigin = new URL(opts.publicUrl).origin;

  const routes = new Hono<AppEnv>();
  routes.get("/openapi.json", (c) => c.body(document().json, 200, { "content-type": "application/json; charset=utf-8", "cache-control": "public, max-age=300" }));

  routes.get(SCALAR_PATH, (c) => {
    const { raw, gzip } = bundle();
    const gzipped = /\bgzip\b/.test(c.req.header("accept-encoding") ?? "");
    return c.body(new Uint8Array(gzipped ? gzip : raw), 200, {
      "content-type": "text/javascript; charset=utf-8",
      "cache-control": "public, max-age=31536000, immutable",
      vary: "accept-encoding",
      ...(gzipped ? { "content-encoding": "gzip" } : {}),
    });
  });

  routes.get("/docs", async (c, next) => {
    const nonce = randomBytes(16).toString("base64");
    c.header(
      "content-security-policy",
      [
        "default-src 'none'",
        `script-src 'self' 'nonce-${nonce}'`,
        // Scalar styles its components inline.
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        `connect-src 'self' ${apiOrigin}`,
        "worker-src 'self' blob:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
      ].join("; "),
    );
    const render = Scalar({
      url: "/openapi.json",
      cdn: SCALAR_PATH,
      nonce,
      pageTitle: "Sahary Cloud API",
      withDefaultFonts: false,
      telemetry: false,
      agent: { disabled: true },
      showDeveloperTools: "never",
      hideClientButton: false,
    } as Parameters<typeof Scalar>[0]);
    // Scalar types its handler for Hono's default environment; this app's adds only variables.
    return render(c as unknown as Parameters<typeof render>[0], next);
  });

  return { routes, document: () => document().build };
}
