/**
 * A short string matching a regular expression, for example inputs derived
 * from `v.regex(...)`. It covers what input schemas use (literals, classes,
 * escapes, groups, alternation, quantifiers, anchors) by building a string
 * from the pattern's structure and letting the engine itself judge each
 * character, then checks the whole result; a pattern it cannot satisfy gives
 * null (the caller falls back, and the OpenAPI test fails loudly).
 */

type Node = { kind: "seq"; items: Node[] } | { kind: "alt"; options: Node[] } | { kind: "char"; source: string } | { kind: "repeat"; node: Node; min: number; max: number };

/** Characters tried for a class, escape or dot, most readable first. */
const CANDIDATES = [..."abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-_.@ :/+=,!#$%&*?~"];

class Parser {
  private pos = 0;
  constructor(private readonly src: string) {}

  parse(): Node {
    const node = this.alternation();
    if (this.pos < this.src.length) throw new Error(`unexpected ${this.src[this.pos]}`);
    return node;
  }

  private alternation(): Node {
    const options = [this.sequence()];
    while (this.src[this.pos] === "|") {
      this.pos++;
      options.push(this.sequence());
    }
    return options.length === 1 ? options[0]! : { kind: "alt", options };
  }

  private sequence(): Node {
    const items: Node[] = [];
    while (this.pos < this.src.length && this.src[this.pos] !== "|" && this.src[this.pos] !== ")") {
      const atom = this.atom();
      if (atom) items.push(this.quantified(atom));
    }
    return { kind: "seq", items };
  }

  private atom(): Node | null {
    const c = this.src[this.pos]!;
    if (c === "^" || c === "$") {
      this.pos++;
      return null;
    }
    if (c === "(") {
      this.pos++;
      if (this.src.startsWith("?:", this.pos)) this.pos += 2;
      else if (this.src.startsWith("?<", this.pos) && this.src[this.pos + 2] !== "=" && this.src[this.pos + 2] !== "!") this.pos = this.src.indexOf(">", this.pos) + 1;
      else if (this.src[this.pos] === "?") throw new Error("lookaround is not supported");
      const inner = this.alternation();
      if (this.src[this.pos] !== ")") throw new Error("unclosed group");
      this.pos++;
      return inner;
    }
    if (c === "[") {
      const start = this.pos;
      this.pos++;
      if (this.src[this.pos] === "^") this.pos++;
      if (this.src[this.pos] === "]") this.pos++;
      while (this.pos < this.src.length && this.src[this.pos] !== "]") this.pos += this.src[this.pos] === "\\" ? 2 : 1;
      this.pos++;
      return { kind: "char", source: this.src.slice(start, this.pos) };
    }
    if (c === "\\") {
      const start = this.pos;
      this.pos += 2;
      const kind = this.src[this.pos - 1];
      if (kind === "b" || kind === "B") return null;
      if ((kind === "p" || kind === "P") && this.src[this.pos] === "{") this.pos = this.src.indexOf("}", this.pos) + 1;
      else if (kind === "x") this.pos += 2;
      else if (kind === "u") this.pos += this.src[this.pos] === "{" ? this.src.indexOf("}", this.pos) + 1 - this.pos : 4;
      return { kind: "char", source: this.src.slice(start, this.pos) };
    }
    this.pos++;
    return { kind: "char", source: c === "." ? "." : c.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&") };
  }

  private quantified(node: Node): Node {
    const c = this.src[this.pos];
    let min = 1;
    let max = 1;
    if (c === "?") [min, max] = [0, 1];
    else if (c === "*") [min, max] = [0, Infinity];
    else if (c === "+") [min, max] = [1, Infinity];
    else if (c === "{") {
      const match = /^\{(\d+)(,(\d*))?\}/.exec(this.src.slice(this.pos));
      if (!match) return node;
      min = Number(match[1]);
      max = match[2] === undefined ? min : match[3] === "" ? Infinity : Number(match[3]);
      this.pos += match[0].length - 1;
    } else return node;
    this.pos++;
    if (this.src[this.pos] === "?") this.pos++;
    return { kind: "repeat", node, min, max };
  }
}

function pickChar(source: string, flags: string): string | null {
  const re = new RegExp(`^(?:${source})$`, flags);
  return CANDIDATES.find((ch) => re.test(ch)) ?? null;
}

/** `extra`: how many repetitions beyond the minimum each open-ended quantifier adds (to reach a minimum length). */
function generate(node: Node, flags: string, extra: number): string | null {
  switch (node.kind) {
    case "char":
      return pickChar(node.source, flags);
    case "seq": {
      let out = "";
      for (const item of node.items) {
        const part = generate(item, flags, extra);
        if (part === null) return null;
        out += part;
      }
      return out;
    }
    case "alt":
      for (const option of node.options) {
        const part = generate(option, flags, extra);
        if (part !== null) return part;
      }
      return null;
    case "repeat": {
      const count = Math.min(node.max, Math.max(node.min, node.min + extra));
      let out = "";
      for (let i = 0; i < count; i++) {
        const part = generate(node.node, flags, extra);
        if (part === null) return null;
        out += part;
      }
      return out;
    }
  }
}

export function exampleForPattern(pattern: string, opts: { minLength?: number; maxLength?: number } = {}): string | null {
  // JSON Schema keeps a pattern's source, not its flags: unicode mode where the pattern allows it.
  const flags = isValid(pattern, "u") ? "u" : isValid(pattern, "") ? "" : null;
  if (flags === null) return null;
  const whole = new RegExp(pattern, flags);
  let tree: Node;
  try {
    tree = new Parser(pattern).parse();
  } catch {
    return null;
  }
  const minLength = opts.minLength ?? 0;
  const maxLength = opts.maxLength ?? Infinity;
  for (const extra of [0, 1, 2, minLength, minLength * 2]) {
    const candidate = generate(tree, flags, extra);
    if (candidate !== null && candidate.length >= minLength && candidate.length <= maxLength && whole.test(candidate)) return candidate;
  }
  return null;
}

function isValid(pattern: string, flags: string): boolean {
  try {
    new RegExp(pattern, flags);
    return true;
  } catch {
    return false;
  }
}
