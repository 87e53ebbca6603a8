// README examples as data: every ```yaml block with the line it starts on, its marker (an HTML
// comment on the line just before the fence) and the `default: X` claims its comments make.
//
// Markers (the only ones understood; anything else before a fence is ordinary prose):
//   <!-- fragment -->            deliberately not a whole config: parsed as YAML, not checked
//   <!-- refused: TEXT -->       a trap shown on purpose: --check-config must refuse it and say TEXT
// A block without a marker is a whole config and must pass `moth-edge --check-config`.

import YAML, { isMap, isPair, isScalar, isSeq, type Node } from 'yaml';

export type BlockKind = { kind: 'whole' } | { kind: 'fragment' } | { kind: 'refused'; says: string };

export interface YamlBlock {
  /** 1-based line of the first YAML line (the one after the fence). */
  line: number;
  text: string;
  marker: BlockKind;
}

const MARKER = /^<!--\s*(fragment|refused:\s*(.+?))\s*-->$/;

export function yamlBlocks(markdown: string): YamlBlock[] {
  const lines = markdown.split('\n');
  const out: YamlBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!/^```ya?ml\s*$/.test(lines[i]!)) continue;
    let j = i - 1;
    while (j >= 0 && lines[j]!.trim() === '') j--;
    const m = j >= 0 ? MARKER.exec(lines[j]!.trim()) : null;
    const marker: BlockKind = !m ? { kind: 'whole' } : m[1] === 'fragment' ? { kind: 'fragment' } : { kind: 'refused', says: m[2]! };
    const body: string[] = [];
    let k = i + 1;
    for (; k < lines.length && !/^```\s*$/.test(lines[k]!); k++) body.push(lines[k]!);
    if (k === lines.length) throw new Error(`README line ${i + 1}: \`\`\`yaml block is never closed`);
    out.push({ line: i + 2, text: body.join('\n'), marker });
    i = k;
  }
  return out;
}

/** One `key: value  # … default: X …` claim: where, and what the comment says the default is. */
export interface DefaultClaim {
  /** Line in the README. */
  line: number;
  path: Array<string | number>;
  /** The text after `default:`, up to `;`, `)`, ` (` or the end of the comment. */
  claimed: string;
}

/** `default: X` where X ends at `;`, `)`, a parenthetical ` (` or the end of the comment. */
const CLAIM = /\bdefault:\s*(.+?)\s*(?:[;)]|\s\(|$)/;

/**
 * Claims of a block: only the explicit `default:` form is read (prose such as "defaults to" is not),
 * so a comment can state a default and the test holds it to what the schema fills in.
 */
export function defaultClaims(block: YamlBlock): DefaultClaim[] {
  const doc = YAML.parseDocument(block.text);
  const lineOf = (offset: number) => block.line + block.text.slice(0, offset).split('\n').length - 1;
  const out: DefaultClaim[] = [];
  const walk = (node: Node | null | undefined, path: Array<string | number>) => {
    if (isMap(node)) {
      for (const p of node.items) {
        if (!isPair(p) || !isScalar(p.key)) continue;
        const key = String(p.key.value);
        const v = p.value as Node | null;
        if (isScalar(v) && v.comment) {
          const m = CLAIM.exec(v.comment);
          if (m) out.push({ line: lineOf(v.range![0]), path: [...path, key], claimed: m[1]! });
        }
        walk(v, [...path, key]);
      }
    } else if (isSeq(node)) {
      node.items.forEach((x, i) => walk(x as Node, [...path, i]));
    }
  };
  walk(doc.contents as Node, []);
  return out;
}

/** A deep copy of `data` with the key at `path` removed (or set, when `value` is given). */
export function withKey(data: unknown, path: Array<string | number>, value?: unknown): unknown {
  const copy = structuredClone(data) as Record<string | number, unknown>;
  let o: Record<string | number, unknown> = copy;
  for (const p of path.slice(0, -1)) o = o[p] as Record<string | number, unknown>;
  const last = path[path.length - 1]!;
  if (value === undefined) delete o[last];
  else o[last] = value;
  return copy;
}

export function valueAt(data: unknown, path: Array<string | number>): unknown {
  let v: unknown = data;
  for (const p of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string | number, unknown>)[p];
  }
  return v;
}
