import type { AnyTRPCProcedure, AnyTRPCRouter, TRPCProcedureType } from "@trpc/server";
import type { Meta } from "./trpc";

/** One procedure of a router as the API reference and the metrics see it. */
export type ProcedureInfo = {
  path: string;
  type: TRPCProcedureType;
  meta: Meta;
  /** The input schemas given to `.input()`, in order (valibot schemas here). */
  inputs: readonly unknown[];
};

/**
 * Every procedure of a router, read from tRPC's own flat record of them, so
 * procedures added anywhere in the tree appear without anyone listing them.
 */
export function listProcedures(router: AnyTRPCRouter): ProcedureInfo[] {
  const record = router._def.procedures as Record<string, AnyTRPCProcedure>;
  return Object.entries(record)
    .map(([path, procedure]) => ({ path, type: procedure._def.type, meta: (procedure._def.meta ?? {}) as Meta, inputs: procedure._def.inputs }))
    .sort((a, b) => a.path.localeCompare(b.path));
}
