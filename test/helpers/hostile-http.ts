/**
 * Building blocks for attacking an HTTP API from outside: its routes as the
 * router has them, values derived from its schemas, the same values made
 * hostile, and the many spellings of one path.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';

export interface Route {
  method: string;
  url: string;
}

/** The app's routes, read from its router (fastify prints them as a tree of path segments). */
export function routesOf(app: FastifyInstance): Route[] {
  const routes: Route[] = [];
  const segments: string[] = [];
  for (const line of app.printRoutes({ commonPrefix: false }).split('\n')) {
    const match = /^([│ ]*)[├└]── (\S+)(?: \(([A-Z, ]+)\))?$/.exec(line);
    if (!match) continue;
    segments.length = match[1]!.length / 4;
    segments.push(match[2]!);
    for (const method of match[3]?.split(', ') ?? []) routes.push({ method, url: segments.join('') });
  }
  return routes;
}

/** A JSON schema (as the OpenAPI document has it from zod) → values it accepts, now and then taken from `pool`. */
export function fromSchema(schema: Record<string, any> | undefined, pool: fc.Arbitrary<string>, every = false): fc.Arbitrary<unknown> {
  if (!schema || Object.keys(schema).length === 0) return every ? fc.constant({ free: 'form' }) : fc.jsonValue({ maxDepth: 3 });
  let arbitrary: fc.Arbitrary<unknown>;
  if (schema.enum) arbitrary = fc.constantFrom(...(schema.enum as unknown[]));
  else if (schema.type === 'string') {
    const text = fc.string({ minLength: schema.minLength ?? 0, maxLength: Math.min(schema.maxLength ?? 64, 64), unit: 'grapheme' });
    arbitrary = fc.oneof(text, pool.filter((s) => s.length >= (schema.minLength ?? 0)));
  } else if (schema.type === 'boolean') arbitrary = fc.boolean();
  else if (schema.type === 'integer' || schema.type === 'number') arbitrary = fc.integer();
  else if (schema.type === 'array') arbitrary = fc.array(fromSchema(schema.items, pool, every), { minLength: every ? 1 : 0, maxLength: 5 });
  else if (schema.type === 'object') {
    const properties = Object.fromEntries(Object.entries<Record<string, any>>(schema.properties ?? {}).map(([k, s]) => [k, fromSchema(s, pool, every)]));
    arbitrary = every ? fc.record(properties) : fc.record(properties, { requiredKeys: schema.required ?? [] });
  } else arbitrary = fc.jsonValue({ maxDepth: 3 });
  return schema.nullable && !every ? fc.option(arbitrary, { nil: null }) : arbitrary;
}

/** `levels` of nesting around a 1, as JSON text (building it as a value would overflow the stack). */
export const deep = (levels: number, open = '{"a":', close = '}') => open.repeat(levels) + '1' + close.repeat(levels);
/** Strings that break naive handling: NUL, unpaired surrogates, direction overrides, prototype names, dot segments. */
export const HOSTILE_STRINGS = ['\u0000', 'a\u0000b', '\ud800', 'x\udc00y', '\u202e\u200b', '𝕏🎥会議', '\n\r\t', '__proto__', 'constructor', '..', '%2e%2e', '%00', ''];

/**
 * A valid body (every optional field present) made hostile one field at a
 * time: each value replaced by each hostile string, by 10,000 levels of
 * nesting, by a long string, by other types; then whole-body attacks.
 */
export function hostileVariants(valid: unknown): string[] {
  const MARK = '\u0001here\u0001';
  const variants: string[] = [];
  const leaves: (string | number)[][] = [];
  const walk = (value: unknown, path: (string | number)[]) => {
    if (value !== null && typeof value === 'object') for (const [k, v] of Object.entries(value)) walk(v, [...path, Array.isArray(value) ? Number(k) : k]);
    if (path.length > 0) leaves.push(path);
  };
  walk(valid, []);
  for (const path of leaves) {
    const marked = structuredClone(valid) as Record<string | number, unknown>;
    let node = marked;
    for (const key of path.slice(0, -1)) node = node[key] as Record<string | number, unknown>;
    node[path.at(-1)!] = MARK;
    const text = JSON.stringify(marked);
    const put = (json: string) => variants.push(text.replace(JSON.stringify(MARK), json));
    for (const hostile of [...HOSTILE_STRINGS, 'x'.repeat(5000)]) put(JSON.stringify(hostile));
    for (const json of [deep(10_000), deep(25_000, '[', ']'), '1e400', '-0', '123456789012345678901234567890', 'true', 'null', '[]', '{}']) put(json);
  }
  const text = JSON.stringify(valid);
  variants.push(
    `{"__proto__":{"isSuper":true,"polluted":1},${text.slice(1)}`,
    `{"constructor":{"prototype":{"polluted":1}},${text.slice(1)}`,
    deep(10_000),
    deep(25_000, '[', ']'),
    `[${text}]`,
    JSON.stringify(text),
    text.slice(0, -1),
    `${text}${text}`,
    JSON.stringify({ ...(valid as object), padding: 'x'.repeat(70_000) }),
  );
  return variants;
}

export type Spelling = [name: string, spell: (path: string, at: number) => string];

/** Ways to spell a path besides as built, the way proxies and attackers do. */
export const SPELLINGS: Spelling[] = [
  ['percent-encoded letter', (p, at) => {
    const letters = [...p.matchAll(/[a-z]/g)].map((m) => m.index);
    const i = letters[at % Math.max(1, letters.length)];
    return i === undefined ? p : `${p.slice(0, i)}%${p.charCodeAt(i).toString(16)}${p.slice(i + 1)}`;
  }],
  ['upper case', (p) => p.toUpperCase()],
  ['one upper-case letter', (p) => p.replace(/[a-z]/, (c) => c.toUpperCase())],
  ['duplicate slash', (p) => `/${p}`],
  ['inner duplicate slash', (p) => p.replace(/\/(?=[^/]*$)/, '//')],
  ['dot segment', (p) => `/.${p}`],
  ['dot-dot segment', (p) => `/rooms/..${p}`],
  ['encoded dot-dot', (p) => `/rooms/%2e%2e${p}`],
  ['trailing slash', (p) => `${p}/`],
  ['query', (p) => `${p}?__proto__[isSuper]=true&x=/services`],
  ['matrix parameter', (p) => `${p};x=1`],
  ['encoded slash', (p) => p.replace(/(?<=.)\/(?=[^/]*$)/, '%2F')],
  ['broken escape', (p) => `${p}%`],
  ['invalid escape', (p) => `${p}%zz`],
  ['overlong UTF-8', (p) => `${p}%C0%AE`],
];
export const AS_BUILT: Spelling = ['as built', (p) => p];

/** A path parameter as it goes on the wire; an unpaired surrogate has no UTF-8, so it goes as invalid bytes. */
export function encodeParam(value: string): string {
  try {
    return encodeURIComponent(value);
  } catch {
    return value.replace(/[\ud800-\udfff]/g, '%ED%A0%80').replace(/[^\w%.-]/g, (c) => encodeURIComponent(c));
  }
}

/** Heap in use after full collections (the caller's garbage gone), to measure what something keeps. */
export async function heapAfterGc(): Promise<number> {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
  return process.memoryUsage().heapUsed;
}

