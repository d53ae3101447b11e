import { readdirSync, readFileSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative } from "node:path";

/**
 * bull-board's UI offers every action its API has (add a job, empty or
 * obliterate a queue, edit job data…) whenever a queue is not read-only, and
 * has no switch per action. The dashboard refuses the actions that would
 * bypass the queue contract (queue-board.ts), so the UI must not offer them:
 * its scripts are served with those controls taken out. The edits are made
 * when the scripts are first read and then verified; if a bull-board upgrade
 * moved things so that any control survives, admins get the read-only board
 * instead (nothing refused is ever offered) and the start-up log says so.
 */

/** Controls removed, found by the translation key of their label. */
const REMOVED_CONTROLS = [
  "QUEUE.ACTIONS.ADD_JOB",
  "QUEUE.ACTIONS.SET_CONCURRENCY",
  "QUEUE.ACTIONS.SET_RATE_LIMIT",
  "QUEUE.ACTIONS.EMPTY",
  "QUEUE.ACTIONS.OBLITERATE",
  "SCHEDULERS.ACTIONS.EDIT",
  "SCHEDULERS.ACTIONS.REMOVE",
] as const;

/** Job actions removed from the per-status lists of job buttons (retry, promote and clean stay). */
const REMOVED_JOB_ACTIONS = ["duplicate", "updateData", "reschedule", "reprioritise", "removeChildren"] as const;

/** The per-status job action lists: `{[x.f.failed]:[a.retry,a.duplicate,…],…}`. */
const JOB_ACTION_MAP = /\{\[\w+\.\w+\.failed\]:\[[^}]*\}/g;
const JOB_ACTION = new RegExp(`\\w+\\.(?:${REMOVED_JOB_ACTIONS.join("|")})\\b,?`, "g");
const REFUSED_JOB_ACTION = new RegExp(JOB_ACTION.source);
const ELEMENT_START = /\(0,[\w$]+\.jsxs?\)\(/g;

/** The index just past the parenthesis closing the one at `open`, skipping strings; -1 if unbalanced. */
function closingParen(source: string, open: number): number {
  let depth = 0;
  for (let i = open; i < source.length; i++) {
    const c = source[i];
    if (c === '"' || c === "'" || c === "`") {
      for (i++; i < source.length && source[i] !== c; i++) if (source[i] === "\\") i++;
    } else if (c === "(") depth++;
    else if (c === ")" && --depth === 0) return i + 1;
  }
  return -1;
}

/** Replaces, with `null`, the innermost JSX element (`(0,x.jsx)(…)`) whose call contains the quoted marker. */
function removeElementsLabelled(source: string, marker: string): string {
  const quoted = `"${marker}"`;
  for (let at = source.indexOf(quoted); at !== -1; at = source.indexOf(quoted)) {
    const starts = [...source.slice(0, at).matchAll(ELEMENT_START)].map((m) => ({ start: m.index!, open: m.index! + m[0].length - 1 }));
    let replaced = false;
    for (const { start, open } of starts.reverse()) {
      const end = closingParen(source, open);
      if (end > at) {
        source = `${source.slice(0, start)}null${source.slice(end)}`;
        replaced = true;
        break;
      }
    }
    if (!replaced) return source;
  }
  return source;
}

export function patchBoardScript(source: string): { source: string; jobActionMaps: number } {
  let jobActionMaps = 0;
  let patched = source.replace(JOB_ACTION_MAP, (map) => {
    jobActionMaps++;
    return map.replace(JOB_ACTION, "").replace(/,\]/g, "]");
  });
  for (const marker of REMOVED_CONTROLS) if (patched.includes(`"${marker}"`)) patched = removeElementsLabelled(patched, marker);
  return { source: patched, jobActionMaps };
}

export type BoardUi = {
  /** Patched scripts by path under the board's static folder (`js/main.….js`). */
  scripts: Map<string, string>;
  /** True when every refused control is gone from every script, and each script still parses. */
  complete: boolean;
  problems: string[];
};

export function boardStaticRoot(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve("@bull-board/ui/package.json")), "dist", "static");
}

let cached: BoardUi | undefined;

/** The board's scripts, patched and verified once per process (they are the installed package's files). */
export function boardUi(): BoardUi {
  if (cached) return cached;
  const root = boardStaticRoot();
  const files = (dir: string): string[] => readdirSync(dir).flatMap((name) => (statSync(join(dir, name)).isDirectory() ? files(join(dir, name)) : [join(dir, name)]));
  const scripts = new Map<string, string>();
  const problems: string[] = [];
  let jobActionMaps = 0;
  for (const file of files(join(root, "js")).filter((f) => f.endsWith(".js"))) {
    const result = patchBoardScript(readFileSync(file, "utf8"));
    jobActionMaps += result.jobActionMaps;
    const path = relative(root, file);
    for (const marker of REMOVED_CONTROLS) if (result.source.includes(`"${marker}"`)) problems.push(`${path} still offers ${marker}`);
    for (const map of result.source.match(JOB_ACTION_MAP) ?? []) if (REFUSED_JOB_ACTION.test(map)) problems.push(`${path} still offers a refused job action`);
    try {
      // Parse only: a chunk is a plain script (webpack's JSONP push).
      new Function(result.source);
    } catch (error) {
      problems.push(`${path} no longer parses: ${(error as Error).message}`);
    }
    scripts.set(path, result.source);
  }
  if (jobActionMaps === 0) problems.push("the list of job actions was not found");
  cached = { scripts, complete: problems.length === 0, problems };
  return cached;
}
