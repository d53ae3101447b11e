/**
 * Builds the typed-client package (client/dist): declarations for
 * client/index.ts and what its types reach, with relative imports given
 * explicit `.js` extensions so projects on any module resolution (NodeNext
 * included) can follow them.
 */
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";

const root = resolve(import.meta.dir, "..");
const dist = join(root, "client", "dist");

rmSync(dist, { recursive: true, force: true });
const tsc = Bun.spawnSync([join(root, "node_modules/.bin/tsc"), "-p", join(root, "client/tsconfig.json")], { cwd: root, stdout: "pipe", stderr: "pipe" });
if (tsc.exitCode !== 0) {
  console.error(tsc.stdout.toString() + tsc.stderr.toString());
  process.exit(1);
}

const files = (dir: string): string[] => readdirSync(dir).flatMap((name) => (statSync(join(dir, name)).isDirectory() ? files(join(dir, name)) : [join(dir, name)]));
let rewritten = 0;
for (const file of files(dist).filter((f) => f.endsWith(".d.ts"))) {
  const source = readFileSync(file, "utf8");
  const output = source.replace(/((?:from|import)\s*\(?\s*["'])(\.{1,2}\/[^"']*?)(["'])/g, (match, head: string, specifier: string, tail: string) => {
    if (/\.(js|json)$/.test(specifier)) return match;
    const target = resolve(dirname(file), specifier);
    if (existsSync(`${target}.d.ts`)) return `${head}${specifier}.js${tail}`;
    if (existsSync(join(target, "index.d.ts"))) return `${head}${specifier}/index.js${tail}`;
    return match;
  });
  if (output !== source) {
    writeFileSync(file, output);
    rewritten++;
  }
}
// Comments may mention Bun; types may not (a consumer has no Bun types).
const bunReferences = files(dist).filter((f) => /\bBun\.|["']bun:/.test(readFileSync(f, "utf8").replace(/\/\*[\s\S]*?\*\//g, "")));
if (bunReferences.length) {
  console.error(`the client's declarations reference Bun: ${bunReferences.join(", ")}`);
  process.exit(1);
}
console.log(`client/dist: ${files(dist).length} declaration files (${rewritten} with rewritten imports)`);
