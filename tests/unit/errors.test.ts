import { describe, expect, test } from "bun:test";
import { TRPCError } from "@trpc/server";
import { APP_ERROR_CODES, AppError, appCodeForTrpcError, errorBody, httpStatusOf } from "../../server/errors";

describe("application error codes", () => {
  test("every code maps to an HTTP status, and only INTERNAL maps to 500", () => {
    for (const code of APP_ERROR_CODES) {
      const status = httpStatusOf(code);
      expect(status).toBeGreaterThanOrEqual(400);
      if (code === "INTERNAL") expect(status).toBe(500);
      else expect(status).not.toBe(500);
    }
  });

  test("an AppError carries its code through tRPC", () => {
    const error = new AppError("QUOTA_EXCEEDED", "too many instances");
    expect(error).toBeInstanceOf(TRPCError);
    expect(error.code).toBe("FORBIDDEN");
    expect(appCodeForTrpcError(error)).toBe("QUOTA_EXCEEDED");
  });

  test("errors tRPC raises itself get stable codes", () => {
    expect(appCodeForTrpcError(new TRPCError({ code: "PARSE_ERROR" }))).toBe("MALFORMED_REQUEST");
    expect(appCodeForTrpcError(new TRPCError({ code: "NOT_FOUND" }))).toBe("PROCEDURE_NOT_FOUND");
    expect(appCodeForTrpcError(new TRPCError({ code: "BAD_REQUEST", cause: Object.assign(new Error("x"), { issues: [] }) }))).toBe("VALIDATION_FAILED");
    expect(appCodeForTrpcError(new TRPCError({ code: "INTERNAL_SERVER_ERROR" }))).toBe("INTERNAL");
  });

  test("the non-tRPC error body mirrors tRPC's shape", () => {
    expect(errorBody("PAYLOAD_TOO_LARGE", "too big", "req-1")).toEqual({
      error: { message: "too big", code: -32013, data: { code: "PAYLOAD_TOO_LARGE", httpStatus: 413, appCode: "PAYLOAD_TOO_LARGE", requestId: "req-1" } },
    });
  });
});
