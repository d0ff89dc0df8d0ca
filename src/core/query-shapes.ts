import type { Compilable, CompiledQuery, Kysely, QueryResult } from 'kysely';

/** Placeholder values for `reusable`: compiled once, replaced by the real values on each run. */
export const slot = (i: number): string => `\u0000slot${i}`;

/** `slot(i)` where the builder wants a number: a string only while the query is compiled. */
export const numberSlot = (i: number): number => slot(i) as unknown as number;

/**
 * A query compiled once and run many times with other values: building and
 * compiling costs more than running these point queries. `bind(values)`
 * puts `values[i]` where `slot(i)` was compiled.
 */
export function reusable<R>(compiled: CompiledQuery<R>): (...values: unknown[]) => CompiledQuery<R> {
  const positions = compiled.parameters.map((p) => {
    const i = typeof p === 'string' && p.startsWith('\u0000slot') ? Number(p.slice(5)) : Number.NaN;
    if (Number.isNaN(i)) throw new Error(`reusable query has a non-slot parameter: ${compiled.sql}`);
    return i;
  });
  return (...values) => ({ ...compiled, parameters: positions.map((i) => values[i]) });
}

/**
 * `reusable` queries whose SQL depends on their input's size (a batch's rows, an `in` list), compiled
 * on first use per shape. On the hot paths (a batch of room events: presence rows, webhook
 * endpoints) building and compiling the Kysely queries cost more CPU than SQLite took to run them.
 * A shape's key names everything that changes its SQL: the statement, and how many rows or items.
 */
export class QueryShapes {
  private readonly compiled = new Map<string, (...values: unknown[]) => CompiledQuery<unknown>>();

  /** Shapes kept; past it they are compiled again (a key per row count of a batch stays well under it). */
  constructor(private readonly max = 512) {}

  /**
   * Runs the shape `key` with `values`: `build` puts `slot(i)` (`numberSlot(i)`) where `values[i]`
   * goes, and nothing else as a value; any other parameter (a literal value in the builder) throws
   * when the shape is compiled: a constant goes in the SQL itself.
   */
  async run<R>(db: Kysely<any>, key: string, values: readonly unknown[], build: () => Compilable<R>): Promise<QueryResult<R>> {
    let bind = this.compiled.get(key);
    if (!bind) {
      bind = reusable(build().compile());
      if (this.compiled.size >= this.max) this.compiled.clear();
      this.compiled.set(key, bind);
    }
    return db.executeQuery(bind(...values) as CompiledQuery<R>);
  }
}
