import { expect, test } from "bun:test";
import { resolve } from "node:path";

// The whole code base type-checks under strict settings; a type error fails the suite.
test("tsc --noEmit is clean", async () => {
  const root = resolve(import.meta.dir, "../..");
  const tsc = Bun.spawn([resolve(root, "node_modules/.bin/tsc"), "--noEmit", "-p", root], { cwd: root, stdout: "pipe", stderr: "pipe" });
  const [code, out] = await Promise.all([tsc.exited, new Response(tsc.stdout).text()]);
  expect(out.trim()).toBe("");
  expect(code).toBe(0);
}, 120_000);
