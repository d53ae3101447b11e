import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { projectRoot } from "../harness/process";

const pkg = JSON.parse(readFileSync(join(projectRoot, "package.json"), "utf8")) as { scripts: Record<string, string> };

test("every npm script that runs project code installs the locked dependencies first and uses the installed Bun", () => {
  for (const [name, command] of Object.entries(pkg.scripts)) {
    if (command.startsWith("sh scripts/")) continue; // image builds: Docker and the host's npm, no node_modules needed
    if (name === "postinstall") continue; // npm's own install step runs it (patch-package), inside the install
    expect(`${name}: ${command.startsWith("sh tests/scripts/ensure-deps.sh && ")}`).toBe(`${name}: true`);
    expect(`${name}: ${/(^|[\s;&|])bun\s/.test(command)}`).toBe(`${name}: false`);
  }
});
