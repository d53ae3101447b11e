import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const root = resolve(import.meta.dir, "../..");
const pages = [
  "README.md",
  ...readdirSync(join(root, "docs"))
    .filter((name) => name.endsWith(".md"))
    .map((name) => `docs/${name}`),
];
const text = new Map(pages.map((page) => [page, readFileSync(join(root, page), "utf8")]));
const scripts = (JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { scripts: Record<string, string> }).scripts;

/** A page's lines outside fenced code blocks, and the lines inside them. */
function split(markdown: string): { prose: string[]; code: string[] } {
  const prose: string[] = [];
  const code: string[] = [];
  let fenced = false;
  for (const line of markdown.split("\n")) {
    if (line.startsWith("```")) fenced = !fenced;
    else (fenced ? code : prose).push(line);
  }
  return { prose, code };
}

/** Heading anchors as GitHub makes them: lower case, punctuation dropped, spaces to hyphens, repeats numbered. */
function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const line of split(markdown).prose) {
    const heading = /^#{1,6} (.+)$/.exec(line)?.[1];
    if (heading === undefined) continue;
    const slug = heading
      .trim()
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, "")
      .replace(/ /g, "-");
    const count = seen.get(slug) ?? 0;
    seen.set(slug, count + 1);
    out.add(count === 0 ? slug : `${slug}-${count}`);
  }
  return out;
}

/** Link targets in prose (a link's text may wrap onto the next line), without inline code spans. */
function links(markdown: string): string[] {
  const prose = split(markdown)
    .prose.join("\n")
    .replace(/`[^`\n]*`/g, "``");
  return [...prose.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!);
}

describe("the documentation", () => {
  test("README links every page in docs/, and every page is linked from it", () => {
    const linked = new Set(links(text.get("README.md")!).map((target) => target.split("#")[0]));
    for (const page of pages.filter((p) => p !== "README.md")) expect(`${page}: ${linked.has(page)}`).toBe(`${page}: true`);
  });

  test("every relative link and #anchor resolves to a file and a heading that exist", () => {
    const broken: string[] = [];
    for (const [page, markdown] of text) {
      for (const target of links(markdown)) {
        if (/^[a-z]+:/i.test(target)) continue; // https:, mailto:
        const [path = "", anchor] = target.split("#");
        const file = path === "" ? join(root, page) : resolve(dirname(join(root, page)), path);
        if (!existsSync(file)) {
          broken.push(`${page}: ${target} (no file)`);
          continue;
        }
        if (anchor === undefined) continue;
        const markdownOf = text.get(relative(root, file)) ?? (file.endsWith(".md") ? readFileSync(file, "utf8") : undefined);
        if (markdownOf === undefined || !anchors(markdownOf).has(anchor)) broken.push(`${page}: ${target} (no heading)`);
      }
    }
    expect(broken).toEqual([]);
  });

  test("every npm script it names exists in package.json", () => {
    const missing: string[] = [];
    for (const [page, markdown] of text) {
      for (const m of markdown.matchAll(/\bnpm (?:run ([\w:-]+)|(start|test)\b)/g)) {
        const name = m[1] ?? m[2]!;
        if (!(name in scripts)) missing.push(`${page}: npm run ${name}`);
      }
    }
    expect(missing).toEqual([]);
  });

  test("never tells a reader to run a bare `bun` (there is no global one), and the files it runs exist", () => {
    const wrong: string[] = [];
    for (const [page, markdown] of text) {
      for (const line of markdown.split("\n")) {
        if (/(^|[\s`($])bun [a-z./-]/.test(line) && !line.includes("node_modules/.bin/bun ")) wrong.push(`${page}: bare bun: ${line}`);
        for (const m of line.matchAll(/node_modules\/\.bin\/bun (?:test (?:--timeout \d+ )?)?([\w-]+\/[\w./-]+)/g)) {
          if (!existsSync(join(root, m[1]!))) wrong.push(`${page}: no such file: ${m[1]}`);
        }
      }
    }
    expect(wrong).toEqual([]);
  });
});
