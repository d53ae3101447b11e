import { TRPC_ERROR_CODES_BY_KEY } from "@trpc/server/rpc";
import * as v from "valibot";
import { SCOPES } from "../auth/actor";
import { APP_ERROR_CODES, httpStatusOf, trpcCodeOf } from "../errors";
import type { ProcedureInfo } from "../procedures";
import type { Access } from "../trpc";
import { curlExample } from "./curl";
import { exampleFromSchema, type JsonSchemaNode } from "./examples";
import { describeInput } from "./schemas";

type Json = Record<string, unknown>;

/** What the document says about one procedure, kept for tests and for the route's log. */
export type ProcedureDoc = { path: string; example: unknown; hasInput: boolean; curl: string };

export type OpenApiBuild = {
  document: Json;
  procedures: ProcedureDoc[];
  /** Procedures whose input could not be described, or whose example does not validate; empty when all is well. */
  problems: string[];
};

const WHO: Record<Access, string> = {
  public: "Anyone; no credentials needed.",
  user: "A signed-in user (any role, email verified or not).",
  verified: "A signed-in user whose email address is verified.",
  operator: "Operators and admins (verified accounts).",
  admin: "Admins only (verified accounts).",
};

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const response = (name: string) => ({ $ref: `#/components/responses/${name}` });

/**
 * The OpenAPI 3.1 description of the tRPC HTTP surface, built from the
 * router itself: every procedure's path, method, input schema (converted from
 * its valibot schema), who may call it and with which API-key scope (its
 * meta), an example input (meta `example`, else derived from the schema) and a
 * curl command. Outputs are TypeScript types, not schemas: the typed client
 * carries them.
 */
export function buildOpenApiDocument(procedures: readonly ProcedureInfo[], opts: { serverUrl: string; version: string }): OpenApiBuild {
  const paths: Json = {};
  const docs: ProcedureDoc[] = [];
  const problems: string[] = [];

  for (const procedure of procedures) {
    const access = procedure.meta.access ?? "public";
    const scope = procedure.meta.scope;
    const input = describeInput(procedure.inputs);
    let schema: JsonSchemaNode | undefined;
    let example: unknown;
    let required = false;
    if (input.kind === "unsupported") {
      problems.push(`${procedure.path}: input cannot be described (${input.problem})`);
      schema = { description: "Not described: see the procedure's source." };
    } else if (input.kind === "schema") {
      schema = input.schema;
      required = !input.optional;
      example = procedure.meta.example !== undefined ? procedure.meta.example : exampleFromSchema(input.schema);
      const invalid = input.valibot.find((s) => !v.safeParse(s, example).success);
      if (invalid) problems.push(`${procedure.path}: example input ${JSON.stringify(example)} does not validate against the procedure's schema`);
    }
    // An optional input whose example is empty says nothing worth a parameter in the example.
    const exampleInCall = example !== undefined && !(!required && isEmptyObject(example)) ? example : undefined;
    const curl = curlExample({ path: procedure.path, type: procedure.type, input: exampleInCall, authenticated: access !== "public" });
    docs.push({ path: procedure.path, example, hasInput: input.kind !== "none", curl });

    const who = [WHO[access]];
    if (access !== "public") who.push(scope ? `API keys need the \`${scope}\` scope.` : "API keys are refused: call it with a session (bearer session token or cookie).");
    const operation: Json = {
      operationId: procedure.path,
      tags: [procedure.path.split(".")[0]],
      summary: procedure.meta.summary ?? procedure.path,
      description: who.join(" "),
      security: security(access, scope),
      "x-sahary-access": access,
      ...(scope ? { "x-sahary-scope": scope } : {}),
      responses: {
        "200": { description: "The procedure's result", content: { "application/json": { schema: ref("Result") } } },
        ...(schema ? { "400": response("BadRequest") } : {}),
        ...(access !== "public" ? { "401": response("Unauthenticated"), "403": response("Forbidden") } : {}),
        default: response("Error"),
      },
      "x-codeSamples": [{ lang: "Shell", label: "curl", source: curl }],
    };
    if (procedure.type === "mutation") {
      operation.requestBody = schema
        ? { required, content: { "application/json": { schema, ...(example !== undefined ? { example } : {}) } } }
        : { required: false, description: "No input. Send `content-type: application/json` all the same (else 415).", content: { "application/json": { schema: {} } } };
      paths[`/trpc/${procedure.path}`] = { post: operation };
    } else {
      if (schema) {
        operation.parameters = [
          {
            name: "input",
            in: "query",
            required,
            description: "The input as JSON, URL-encoded (curl: `-G --data-urlencode 'input=…'`).",
            content: { "application/json": { schema, ...(example !== undefined ? { example } : {}) } },
          },
        ];
      }
      if (procedure.type === "subscription") operation.description += " A subscription: the answer is a stream of server-sent events.";
      paths[`/trpc/${procedure.path}`] = { get: operation };
    }
  }

  paths["/trpc/{procedures}"] = batchPaths();

  const document: Json = {
    openapi: "3.1.0",
    info: {
      title: "Sahary Cloud API",
      version: opts.version,
      description: INTRODUCTION,
    },
    jsonSchemaDialect: "https://json-schema.org/draft/2020-12/schema",
    servers: [{ url: opts.serverUrl.replace(/\/+$/, ""), description: "This platform (PUBLIC_URL)" }],
    tags: [...new Set(procedures.map((p) => p.path.split(".")[0]!))].map((name) => ({ name })),
    paths,
    components: components(),
  };
  return { document, procedures: docs, problems };
}

function isEmptyObject(value: unknown): boolean {
  return typeof value === "object" && value !== null && !Array.isArray(value) && Object.keys(value).length === 0;
}

/** In OpenAPI 3.1 a scheme's list names roles or scopes: the API key lists the one scope it needs. */
function security(access: Access, scope: string | undefined) {
  if (access === "public") return [];
  return [{ sessionToken: [] }, { sessionCookie: [] }, ...(scope ? [{ apiKey: [scope] }] : [])];
}

function batchPaths(): Json {
  const procedures = {
    name: "procedures",
    in: "path",
    required: true,
    description: "Procedure paths joined by commas, all queries or all mutations: `auth.me,compute.plans.list`.",
    schema: { type: "string" },
  };
  const batch = { name: "batch", in: "query", required: true, description: "Always `1` for a batch.", schema: { const: "1" } };
  const inputs = {
    type: "object",
    description: 'Each call\'s input under its position in the path list, from "0"; positions without input may be left out.',
    additionalProperties: true,
    example: { "0": null, "1": { id: "3f1c2a9e-8b7d-4c6e-9f01-2a3b4c5d6e7f" } },
  };
  const answer = {
    description: "One entry per call, in order: a result or an error envelope each. 207 when some failed.",
    content: { "application/json": { schema: { type: "array", items: { oneOf: [ref("Result"), ref("ErrorEnvelope")] } } } },
  };
  const common = {
    tags: ["batching"],
    security: [{}, { sessionToken: [] }, { sessionCookie: [] }, { apiKey: [] }],
    responses: { "200": answer, "207": answer, default: response("Error") },
  };
  return {
    get: {
      ...common,
      operationId: "batch.query",
      summary: "Several queries in one request",
      description: "Each call is authorised and validated on its own, exactly as when called alone.",
      parameters: [procedures, batch, { name: "input", in: "query", required: false, content: { "application/json": { schema: inputs } } }],
      "x-codeSamples": [
        { lang: "Shell", label: "curl", source: `curl -sG "$API/auth.me,compute.plans.list" -H "Authorization: Bearer $TOKEN" \\\n  --data-urlencode 'batch=1' --data-urlencode 'input={}'` },
      ],
    },
    post: {
      ...common,
      operationId: "batch.mutation",
      summary: "Several mutations in one request",
      description: "Each call is authorised and validated on its own, in order.",
      parameters: [procedures, batch],
      requestBody: { required: true, content: { "application/json": { schema: inputs } } },
      "x-codeSamples": [
        {
          lang: "Shell",
          label: "curl",
          source: `curl -s -X POST "$API/auth.requestPasswordReset,auth.requestPasswordReset?batch=1" \\\n  -H 'content-type: application/json' \\\n  --data-raw '{"0":{"email":"ada@example.com"},"1":{"email":"grace@example.com"}}'`,
        },
      ],
    },
  };
}

function components(): Json {
  const trpcCodes = Object.keys(TRPC_ERROR_CODES_BY_KEY);
  const appCodes = APP_ERROR_CODES.map((code) => `- \`${code}\`: HTTP ${httpStatusOf(code)} (${trpcCodeOf(code)})`).join("\n");
  const envelope = (appCode: JsonSchemaNode) => ({
    type: "object",
    required: ["error"],
    properties: {
      error: {
        type: "object",
        required: ["message", "code", "data"],
        properties: {
          message: { type: "string", description: "For people; may change. Branch on `data.appCode`." },
          code: { type: "integer", description: "JSON-RPC 2.0 error code (tRPC)." },
          data: {
            type: "object",
            required: ["code", "httpStatus", "appCode"],
            properties: {
              code: { type: "string", enum: trpcCodes, description: "tRPC's error code (it fixes the HTTP status)." },
              httpStatus: { type: "integer" },
              path: { type: "string", description: "The procedure, for errors inside tRPC." },
              appCode,
              requestId: { type: ["string", "null"], description: "Also in the X-Request-Id response header and the server's log line." },
              issues: {
                type: "array",
                description: "With VALIDATION_FAILED: each refused field (dotted path) and why.",
                items: { type: "object", required: ["path", "message"], properties: { path: { type: "string" }, message: { type: "string" } } },
              },
              details: { type: "object", description: "Code-specific facts, e.g. `requiredScope`, `retryAfterSeconds`, `reasons`." },
            },
          },
        },
      },
    },
  });
  const errorResponse = (description: string, codes?: string[]) => ({
    description,
    content: { "application/json": { schema: codes ? envelope({ allOf: [ref("AppErrorCode"), { enum: codes }] }) : ref("ErrorEnvelope") } },
  });
  return {
    securitySchemes: {
      sessionToken: { type: "http", scheme: "bearer", description: "A session token from `auth.login` (`token` in its result)." },
      apiKey: {
        type: "http",
        scheme: "bearer",
        bearerFormat: "sahary_…",
        description: `An API key from \`auth.apiKeys.create\`, sent as a bearer token. It reaches only procedures that name a scope, and only with that scope: ${SCOPES.map((s) => `\`${s}\``).join(", ")}.`,
      },
      sessionCookie: {
        type: "apiKey",
        in: "cookie",
        name: "sahary_session",
        description: "The session cookie `auth.login` sets (`__Host-sahary_session` in production). Honoured only from the platform's own origins.",
      },
    },
    schemas: {
      AppErrorCode: { type: "string", enum: [...APP_ERROR_CODES], description: `The closed list of error codes; a code never changes meaning.\n\n${appCodes}` },
      ErrorEnvelope: envelope(ref("AppErrorCode")),
      Result: {
        type: "object",
        required: ["result"],
        properties: { result: { type: "object", required: ["data"], properties: { data: { description: "The procedure's output (typed in the TypeScript client)." } } } },
      },
    },
    responses: {
      Error: errorResponse("An error; every route uses this envelope."),
      BadRequest: errorResponse("The input was refused.", ["VALIDATION_FAILED", "MALFORMED_REQUEST"]),
      Unauthenticated: errorResponse("No valid session or API key.", ["UNAUTHENTICATED"]),
      Forbidden: errorResponse("Signed in, but not allowed.", ["FORBIDDEN", "INSUFFICIENT_SCOPE", "ACCOUNT_SUSPENDED", "EMAIL_NOT_VERIFIED"]),
    },
  };
}

const INTRODUCTION = `The platform's API is [tRPC](https://trpc.io) over plain HTTP and JSON; any HTTP client can call it.

- **Queries** are \`GET /trpc/<procedure>?input=<URL-encoded JSON>\` (omit \`input\` when there is none).
- **Mutations** are \`POST /trpc/<procedure>\` with the JSON input as the body and \`content-type: application/json\` (also without input; else 415).
- **Batching**: several queries (or mutations) in one request: \`/trpc/a,b?batch=1\` with inputs keyed by position.
- **Results** are \`{"result":{"data":…}}\`; **errors** are \`{"error":{"message","code","data":{"appCode",…}}}\` with the HTTP status of the code. Branch on \`data.appCode\`, from a closed list that never changes meaning (\`AppErrorCode\` below).
- **Authentication**: \`Authorization: Bearer <session token or API key>\`, or the session cookie. Each procedure says who may call it and which API-key scope it needs.

The curl examples use two shell variables:

\`\`\`sh
export API=http://127.0.0.1:3000/trpc     # this server's /trpc
export TOKEN=…                            # a session token (auth.login) or an API key
\`\`\`

Query inputs go through \`curl -G --data-urlencode 'input=…'\`, so curl encodes them and never mistakes \`{}\` or \`[]\` for a URL glob.`;
