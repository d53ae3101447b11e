import { expect } from "bun:test";
import { TRPCClientError } from "@trpc/client";
import type { AppErrorCode } from "../../server/errors";

/** Asserts the call fails with the given application error code; returns the error. */
export async function expectAppError(call: Promise<unknown>, appCode: AppErrorCode): Promise<TRPCClientError<any>> {
  let caught: unknown;
  try {
    await call;
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(TRPCClientError);
  const error = caught as TRPCClientError<any>;
  expect({ appCode: error.data?.appCode, message: error.message }).toMatchObject({ appCode });
  expect(JSON.stringify(error.shape ?? {})).not.toContain("stack");
  return error;
}
