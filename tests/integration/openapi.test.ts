import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Validator } from "@seriousme/openapi-schema-validator";
import * as v from "valibot";
import { APP_ERROR_CODES } from "../../server/errors";
import { buildOpenApiDocument } from "../../server/openapi/document";
import { listProcedures } from "../../server/procedures";
import { appRouter } from "../../server/router";
import { authedProcedure, publicProcedure, router } from "../../server/trpc";
import { startTestServer, type TestServer } from "../harness/server";
import { createUserWithSession } from "../harness/users";

type Operation = {
  operationId: string;
  security: Array<Record<string, string[]>>;
  "x-sahary-access": string;
  "x-sahary-scope"?: string;
  parameters?: Array<{ name: string; in: string; required: boolean; content: { "application/json": { schema: unknown; example?: unknown } } }>;
  requestBody?: { required: boolean; content: { "application/json": { schema: unknown; example?: unknown } } };
  "x-codeSamples": Array<{ lang: string; source: string }>;
};
type Document = { openapi: string; paths: Record<string, { get?: Operation; post?: Operation }>; components: { schemas: Record<string, any>; securitySchemes: Record<string, any> } };

let app: TestServer;
let doc: Document;
const procedures = listProcedures(appRouter);

beforeAll(async () => {
  app = await startTestServer();
  const res = await fetch(`${app.url}/openapi.json`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toContain("application/json");
  doc = (await res.json()) as Document;
});
afterAll(() => app.close());

function operationOf(path: string, type: string): Operation {
  const item = doc.paths[`/trpc/${path}`];
  const operation = type === "mutation" ? item?.post : item?.get;
  if (!operation) throw new Error(`no ${type} operation for ${path}`);
  return operation;
}

function exampleOf(operation: Operation): unknown {
  return operation.requestBody?.content["application/json"].example ?? operation.parameters?.find((p) => p.name === "input")?.content["application/json"].example;
}

describe("/openapi.json", () => {
  test("is a valid OpenAPI 3.1 document", async () => {
    expect(doc.openapi).toBe("3.1.0");
    const result = await new Validator().validate(doc as unknown as Record<string, unknown>);
    if (!result.valid) console.error(JSON.stringify(result.errors, null, 2));
    expect(result.valid).toBe(true);
  });

  test("lists every procedure of the router, queries as GET and mutations as POST, and nothing else", () => {
    expect(procedures.length).toBeGreaterThan(40);
    for (const { path, type } of procedures) expect(operationOf(path, type).operationId).toBe(path);
    const documented = Object.keys(doc.paths).filter((p) => p !== "/trpc/{procedures}");
    expect(documented.sort()).toEqual(procedures.map((p) => `/trpc/${p.path}`).sort());
  });

  test("says who may call each procedure and which API-key scope it needs, from the procedure's meta", () => {
    for (const { path, type, meta } of procedures) {
      const operation = operationOf(path, type);
      expect(operation["x-sahary-access"]).toBe(meta.access!);
      if (meta.access === "public") {
        expect(operation.security).toEqual([]);
        continue;
      }
      expect(operation.security).toContainEqual({ sessionToken: [] });
      expect(operation.security).toContainEqual({ sessionCookie: [] });
      if (meta.scope) expect(operation.security).toContainEqual({ apiKey: [meta.scope] });
      else expect(operation.security.some((s) => "apiKey" in s)).toBe(false);
    }
    expect(operationOf("compute.instances.create", "mutation").security).toContainEqual({ apiKey: ["compute:write"] });
    expect(operationOf("admin.users.setRole", "mutation")["x-sahary-access"]).toBe("admin");
  });

  test("every example input validates against the procedure's own schema", () => {
    const build = buildOpenApiDocument(procedures, { serverUrl: "http://127.0.0.1:3000", version: "test" });
    expect(build.problems).toEqual([]);
    let checked = 0;
    for (const { path, type, inputs } of procedures) {
      if (inputs.length === 0) continue;
      const example = exampleOf(operationOf(path, type));
      expect(example).not.toBeUndefined();
      for (const schema of inputs) {
        const parsed = v.safeParse(schema as v.GenericSchema, example);
        if (!parsed.success) throw new Error(`${path}: example ${JSON.stringify(example)} fails: ${parsed.issues.map((i) => i.message).join("; ")}`);
      }
      checked++;
    }
    expect(checked).toBeGreaterThan(25);
  });

  test("describes the error envelope with the closed list of appCodes, and the three ways to authenticate", () => {
    expect(doc.components.schemas.AppErrorCode.enum).toEqual([...APP_ERROR_CODES]);
    expect(doc.components.schemas.ErrorEnvelope.properties.error.properties.data.properties.appCode).toEqual({ $ref: "#/components/schemas/AppErrorCode" });
    expect(Object.keys(doc.components.securitySchemes).sort()).toEqual(["apiKey", "sessionCookie", "sessionToken"]);
    expect(doc.paths["/trpc/{procedures}"]?.get?.parameters?.map((p) => p.name)).toEqual(["procedures", "batch", "input"]);
  });

  test("gives each procedure a curl example that URL-encodes query input instead of putting JSON in the URL", () => {
    for (const { path, type, inputs } of procedures) {
      const [sample] = operationOf(path, type)["x-codeSamples"];
      expect(sample!.source).toContain(`"$API/${path}"`);
      const url = /"\$API\/[^"]*"/.exec(sample!.source)![0];
      expect(url).not.toMatch(/[{}[\]]/);
      if (type === "query" && inputs.length > 0 && sample!.source.includes("input=")) expect(sample!.source).toMatch(/^curl -sG [\s\S]*\n {2}--data-urlencode 'input=/);
      if (type === "mutation") expect(sample!.source).toContain("content-type: application/json");
    }
  });

  test("a procedure added to a router appears with an example, without anyone editing the document code", () => {
    const extended = router({
      app: appRouter,
      widgets: router({
        make: authedProcedure
          .meta({ scope: "compute:write" })
          .input(v.object({ label: v.pipe(v.string(), v.regex(/^[a-z]{3}-\d{2}$/)), count: v.pipe(v.number(), v.integer(), v.minValue(2)) }))
          .mutation(() => "made"),
        peek: publicProcedure.query(() => "peeked"),
      }),
    });
    const build = buildOpenApiDocument(listProcedures(extended), { serverUrl: "http://127.0.0.1:3000", version: "test" });
    expect(build.problems).toEqual([]);
    const paths = (build.document as unknown as Document).paths;
    expect(paths["/trpc/widgets.make"]?.post?.security).toContainEqual({ apiKey: ["compute:write"] });
    expect(paths["/trpc/widgets.peek"]?.get?.["x-sahary-access"]).toBe("public");
    const example = build.procedures.find((p) => p.path === "widgets.make")!.example as { label: string; count: number };
    expect(example.label).toMatch(/^[a-z]{3}-\d{2}$/);
    expect(example.count).toBeGreaterThanOrEqual(2);
    expect(paths["/trpc/app.auth.login"]?.post).toBeDefined();
  });
});

describe("the curl examples work as printed", () => {
  test("every query example (as an admin) and every public mutation example reaches its procedure with accepted input", async () => {
    const { token } = await createUserWithSession(app.services, { role: "admin" });
    const build = buildOpenApiDocument(procedures, { serverUrl: app.url, version: "test" });
    const shapeErrors = ["VALIDATION_FAILED", "MALFORMED_REQUEST", "UNSUPPORTED_MEDIA_TYPE", "METHOD_NOT_ALLOWED", "PROCEDURE_NOT_FOUND", "UNAUTHENTICATED", "FORBIDDEN"];
    let ran = 0;
    for (const { path, type, meta } of procedures) {
      if (type === "mutation" && meta.access !== "public") continue;
      const { curl } = build.procedures.find((p) => p.path === path)!;
      const run = Bun.spawn(["sh", "-c", curl], { env: { ...process.env, API: `${app.url}/trpc`, TOKEN: token }, stdout: "pipe", stderr: "pipe" });
      const [code, out, err] = await Promise.all([run.exited, new Response(run.stdout).text(), new Response(run.stderr).text()]);
      expect(`${path}: exit ${code} ${err}`).toBe(`${path}: exit 0 `);
      // A subscription answers with server-sent events; a refusal is the JSON of its `serialized-error` event.
      if (type === "subscription") expect(`${path}: ${out}`).toContain("event: connected");
      const body = (type === "subscription" ? { error: JSON.parse(out.match(/^event: serialized-error\ndata: (.*)$/m)?.[1] ?? "null") ?? undefined } : JSON.parse(out)) as {
        result?: unknown;
        error?: { data: { appCode: string } };
      };
      if (body.error) expect(`${path}: ${body.error.data.appCode}`).not.toBeOneOf(shapeErrors.map((c) => `${path}: ${c}`));
      ran++;
    }
    expect(ran).toBeGreaterThan(30);
  }, 120_000);
});

describe("/docs", () => {
  test("serves Scalar from this server only, under a CSP that keeps the page on this origin", async () => {
    const res = await fetch(`${app.url}/docs`);
    expect(res.status).toBe(200);
    const html = await res.text();
    const csp = res.headers.get("content-security-policy")!;
    expect(csp).toContain("default-src 'none'");
    expect(csp).toMatch(/script-src 'self' 'nonce-[A-Za-z0-9+/=]+'/);
    const scripts = [...html.matchAll(/<script[^>]*src="([^"]+)"/g)].map((m) => m[1]!);
    expect(scripts).toHaveLength(1);
    expect(scripts[0]).toMatch(/^\/docs\/scalar-[\d.]+\.js$/);
    expect(html).not.toMatch(/https?:\/\/(?!127\.0\.0\.1)/);
    expect(html).toContain('"url": "/openapi.json"');

    const bundle = await fetch(`${app.url}${scripts[0]}`, { headers: { "accept-encoding": "gzip" } });
    expect(bundle.status).toBe(200);
    expect(bundle.headers.get("content-type")).toContain("javascript");
    expect(bundle.headers.get("cache-control")).toContain("immutable");
    expect((await bundle.text()).length).toBeGreaterThan(1_000_000);
  });
});
