import { z } from 'zod';

/**
 * Limits of a free-form JSON value taken from outside (REST bodies, signaling
 * data, bus payloads) that is stored or echoed to others. Serialising or
 * walking a deeply nested value recursively overflows the stack, so values are
 * measured here iteratively, before anything else touches them.
 */
export interface JsonLimits {
  /** Nesting of objects and arrays; a scalar is depth 0, `{}` depth 1. */
  maxDepth: number;
  /** Objects, arrays and scalars, all counted. */
  maxNodes: number;
  /** UTF-16 length of any one string or key. */
  maxStringLength: number;
}

export const defaultJsonLimits: JsonLimits = { maxDepth: 8, maxNodes: 2000, maxStringLength: 4096 };

/** Why `value` is not plain JSON within `limits`, or undefined when it is. */
export function jsonLimitViolation(value: unknown, limits: JsonLimits = defaultJsonLimits): string | undefined {
  const stack: { value: unknown; depth: number }[] = [{ value, depth: 0 }];
  let nodes = 0;
  while (stack.length > 0) {
    const { value: node, depth } = stack.pop()!;
    if (++nodes > limits.maxNodes) return `more than ${limits.maxNodes} values`;
    if (node === null || typeof node === 'boolean') continue;
    if (typeof node === 'number') {
      if (!Number.isFinite(node)) return 'numbers must be finite';
      continue;
    }
    if (typeof node === 'string') {
      if (node.length > limits.maxStringLength) return `a string is longer than ${limits.maxStringLength} characters`;
      if (node.includes('\u0000')) return 'strings must not contain NUL characters';
      continue;
    }
    if (typeof node !== 'object') return `${typeof node} is not a JSON value`;
    if (depth + 1 > limits.maxDepth) return `nested deeper than ${limits.maxDepth} levels`;
    if (Array.isArray(node)) {
      for (const item of node) stack.push({ value: item, depth: depth + 1 });
      continue;
    }
    const proto = Object.getPrototypeOf(node) as unknown;
    if (proto !== Object.prototype && proto !== null) return 'only plain objects are JSON';
    for (const [key, item] of Object.entries(node)) {
      if (key.length > limits.maxStringLength) return `a key is longer than ${limits.maxStringLength} characters`;
      if (key.includes('\u0000')) return 'keys must not contain NUL characters';
      stack.push({ value: item, depth: depth + 1 });
    }
  }
  return undefined;
}

/** Any JSON value within `limits`. */
export function boundedJson(limits: Partial<JsonLimits> = {}): z.ZodType<unknown> {
  const effective = { ...defaultJsonLimits, ...limits };
  return z.unknown().superRefine((value, ctx) => {
    const violation = jsonLimitViolation(value, effective);
    if (violation) ctx.addIssue({ code: 'custom', message: violation });
  });
}

/** A JSON object (not an array or scalar) within `limits`. */
export function boundedJsonObject(limits: Partial<JsonLimits> = {}): z.ZodType<Record<string, unknown>> {
  const effective = { ...defaultJsonLimits, ...limits };
  return z.record(z.string(), z.unknown()).superRefine((value, ctx) => {
    const violation = jsonLimitViolation(value, effective);
    if (violation) ctx.addIssue({ code: 'custom', message: violation });
  });
}
