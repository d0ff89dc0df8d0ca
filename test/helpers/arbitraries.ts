import fc from 'fast-check';
import type { z } from 'zod';

/**
 * fast-check arbitraries for the robustness suites: values derived from a
 * zod schema (mostly valid, so requests get past validation into the code
 * behind it), and hostile JSON that no schema-following client would send.
 * Values are built as JSON *text*, so they can hold what JSON.stringify
 * cannot write: 60,000 levels of nesting, `__proto__` keys, numbers that
 * parse to Infinity.
 */

/** JSON text inserted as is into a derived value. */
export class RawJson {
  constructor(readonly text: string) {}
}

const raw = (text: string) => new RawJson(text);

type Def = { type: string; [key: string]: any };
type Check = { check: string; value?: number; inclusive?: boolean; minimum?: number; maximum?: number; format?: string; pattern?: RegExp };

const defOf = (schema: unknown): Def => (schema as { _zod: { def: Def } })._zod.def;
const checksOf = (def: Def): Check[] => (def.checks ?? []).map((c: { _zod: { def: Check } }) => c._zod.def);

/** Lengths kept small: validity is what matters here, size comes from the hostile values. */
const SMALL = 6;

/**
 * Object members the caller knows better values for, by key, at any depth
 * (real object ids, parameters the server accepts); the derived value stays
 * one choice in four.
 */
export type Overrides = Record<string, fc.Arbitrary<unknown>>;

/** Values shaped like `schema` (strings, numbers and arrays within its checks), mostly valid. */
export function arbitraryOf(schema: z.ZodType | z.core.$ZodType, overrides: Overrides = {}): fc.Arbitrary<unknown> {
  const def = defOf(schema);
  const of = (inner: unknown) => arbitraryOf(inner as z.ZodType, overrides);
  switch (def.type) {
    case 'string': {
      const checks = checksOf(def);
      const min = checks.find((c) => c.check === 'min_length')?.minimum ?? 0;
      const max = checks.find((c) => c.check === 'max_length')?.maximum ?? 64;
      const pattern = checks.find((c) => c.format === 'regex')?.pattern;
      if (pattern) {
        const usable = new RegExp(pattern.source, pattern.flags.replace(/[^dgmsu]/g, ''));
        return fc.stringMatching(usable).filter((s) => s.length >= min && s.length <= max);
      }
      return fc.oneof(
        fc.string({ minLength: min, maxLength: Math.min(max, Math.max(min, 24)) }),
        fc.string({ unit: 'binary', minLength: min, maxLength: Math.min(max, Math.max(min, 24)) }),
      );
    }
    case 'number': {
      const checks = checksOf(def);
      const lower = checks.find((c) => c.check === 'greater_than');
      const upper = checks.find((c) => c.check === 'less_than');
      const isInt = checks.some((c) => c.format === 'safeint' || c.format === 'int32' || c.format === 'uint32');
      if (isInt) {
        const min = lower ? Math.ceil(lower.value! + (lower.inclusive ? 0 : 1)) : -(2 ** 31);
        const max = upper ? Math.floor(upper.value! - (upper.inclusive ? 0 : 1)) : 2 ** 31;
        return fc.oneof(fc.constantFrom(min, max), fc.integer({ min, max }));
      }
      return fc.double({
        min: lower?.value ?? -1e9,
        max: upper?.value ?? 1e9,
        minExcluded: lower ? !lower.inclusive : false,
        maxExcluded: upper ? !upper.inclusive : false,
        noNaN: true,
        noDefaultInfinity: true,
      });
    }
    case 'boolean':
      return fc.boolean();
    case 'null':
      return fc.constant(null);
    case 'enum':
      return fc.constantFrom(...Object.values(def.entries as Record<string, string>));
    case 'literal':
      return fc.constantFrom(...(def.values as unknown[]));
    case 'optional':
    case 'default':
    case 'prefault':
      return fc.option(of(def.innerType), { nil: undefined, freq: 3 });
    case 'nullable':
      return fc.option(of(def.innerType), { nil: null, freq: 3 });
    case 'pipe':
      // A measured value piped into its shape: the shape says what is valid.
      return of(def.out);
    case 'union':
      return fc.oneof(...(def.options as unknown[]).map(of));
    case 'array': {
      const checks = checksOf(def);
      const min = checks.find((c) => c.check === 'min_length')?.minimum ?? 0;
      const max = checks.find((c) => c.check === 'max_length')?.maximum ?? SMALL;
      return fc.array(of(def.element), { minLength: min, maxLength: Math.min(max, Math.max(min, SMALL)) });
    }
    case 'record':
      return fc.dictionary(of(def.keyType) as fc.Arbitrary<string>, of(def.valueType), { maxKeys: SMALL });
    case 'object': {
      const shape = def.shape as Record<string, z.ZodType>;
      const required = Object.keys(shape).filter((key) => !['optional', 'default', 'prefault'].includes(defOf(shape[key]).type));
      const fields: Record<string, fc.Arbitrary<unknown>> = {};
      for (const [key, value] of Object.entries(shape)) {
        const known = overrides[key];
        fields[key] = known ? fc.oneof({ weight: 1, arbitrary: of(value) }, { weight: 3, arbitrary: known }) : of(value);
      }
      return fc.record(fields, { requiredKeys: required });
    }
    default:
      // unknown, any, custom: any JSON.
      return fc.jsonValue({ maxDepth: 2 });
  }
}

const nested = (open: string, close: string) => (depth: number) => `${open.repeat(depth)}${close.repeat(depth)}`;
const manyKeys = (n: number) => `{${Array.from({ length: n }, (_, i) => `"k${i}":${i}`).join(',')}}`;

/**
 * JSON that tests the edges: nesting far past any limit, strings of up to
 * 100,000 characters, NUL, lone surrogates, prototype keys, numbers beyond
 * every range (and ones JSON.parse turns into Infinity), wrong types. Each
 * stays well under the gateway's 256 KiB message limit.
 */
export const hostileJson: fc.Arbitrary<RawJson> = fc.oneof(
  // Deep nesting twice as often as the rest: it broke rooms once (issue 12, item 2).
  { weight: 2, arbitrary: fc.integer({ min: 1000, max: 60_000 }).map((d) => raw(nested('[', ']')(d))) },
  { weight: 2, arbitrary: fc.integer({ min: 1000, max: 30_000 }).map((d) => raw(`${'{"a":'.repeat(d)}1${'}'.repeat(d)}`)) },
  fc.integer({ min: 5000, max: 100_000 }).map((n) => raw(JSON.stringify('x'.repeat(n)))),
  fc.integer({ min: 1000, max: 5000 }).map((n) => raw(manyKeys(n))),
  fc.integer({ min: 1000, max: 20_000 }).map((n) => raw(`[${'0,'.repeat(n - 1)}0]`)),
  fc.string({ unit: 'binary', maxLength: 64 }).map((s) => raw(JSON.stringify(s))),
  fc.constantFrom(
    '"\\u0000"',
    '"a\\u0000b"',
    '{"\\u0000":1}',
    '"\\ud800"',
    '"\\udfff\\ud800"',
    '"\\u202e\\u0301\\ufeff"',
    '"💥🏳️‍🌈ǅ"',
    '{"__proto__":{"polluted":"yes"}}',
    '{"constructor":{"prototype":{"polluted":"yes"}}}',
    '{"__proto__":{"__proto__":{"polluted":"yes"}},"prototype":1,"toString":"x","hasOwnProperty":2}',
    '-1',
    '-0',
    '0.5',
    '1e308',
    '-1e308',
    '1e309',
    '-1e309',
    '1e-400',
    '4294967296',
    '9007199254740993',
    '-2147483649',
    'null',
    'true',
    '[]',
    '{}',
    '""',
    '[null]',
    '[[],[[]],{}]',
  ).map(raw),
  fc.jsonValue({ maxDepth: 3 }).map((v) => raw(JSON.stringify(v))),
);

/** Keys a hostile client adds to an object. */
const hostileKey = fc.oneof(
  fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', '', '\u0000', 'x'.repeat(5000)),
  fc.string({ unit: 'binary', maxLength: 16 }),
);

const isObject = (value: unknown): value is Record<string, unknown> =>
  value !== null && typeof value === 'object' && !Array.isArray(value) && !(value instanceof RawJson);

/**
 * `value` with `hostile` put somewhere: walking down from the root, each
 * choice picks a member to go into (one in five stops), so every field of
 * an object is as likely as its siblings, however big their own contents.
 * Where it stops, the hostile value replaces what is there or, in an object,
 * goes under a new `key`. Copies have no prototype, so `__proto__` is a key.
 */
function mutated(value: unknown, hostile: RawJson, key: string, choices: readonly number[]): unknown {
  const [choice, ...rest] = choices;
  const members: [string | number, unknown][] = Array.isArray(value) ? value.map((item, i) => [i, item]) : isObject(value) ? Object.entries(value) : [];
  if (choice === undefined || members.length === 0 || choice % 5 === 0) {
    if (isObject(value) && choice !== undefined && choice % 2 === 1) return Object.assign(Object.create(null), value, { [key]: hostile });
    return hostile;
  }
  const [at, member] = members[choice % members.length]!;
  const inner = mutated(member, hostile, key, rest);
  if (Array.isArray(value)) return value.map((item, i) => (i === at ? inner : item));
  return Object.assign(Object.create(null), value, { [at]: inner });
}

/** JSON text of a derived value with RawJson pieces inserted as they are. */
export function toJsonText(value: unknown): string {
  if (value instanceof RawJson) return value.text;
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : toJsonText(v))).join(',')}]`;
  if (value && typeof value === 'object') {
    const members = Object.entries(value).filter(([, v]) => v !== undefined);
    return `{${members.map(([k, v]) => `${JSON.stringify(k)}:${toJsonText(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/**
 * JSON text for something validated by `schema`: derived values, derived
 * values with one hostile value or key slipped in anywhere, hostile values
 * alone, or nothing (undefined: no data at all).
 */
export function jsonTextFor(schema: z.ZodType | z.core.$ZodType, overrides: Overrides = {}): fc.Arbitrary<string | undefined> {
  const derived = arbitraryOf(schema, overrides);
  const withHostile = fc
    .tuple(derived, hostileJson, hostileKey, fc.array(fc.nat(), { minLength: 1, maxLength: 6 }))
    .map(([value, hostile, key, choices]) => mutated(value, hostile, key, choices));
  return fc.oneof(
    { weight: 4, arbitrary: derived.map(toJsonText) },
    { weight: 4, arbitrary: withHostile.map(toJsonText) },
    { weight: 1, arbitrary: hostileJson.map((h) => h.text) },
    { weight: 1, arbitrary: fc.constant(undefined) },
  );
}
