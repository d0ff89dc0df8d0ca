import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Kysely, SqliteDialect } from 'kysely';
import SQLite from 'better-sqlite3';
import { QueryShapes, numberSlot, slot } from '../../src/core/query-shapes.js';

// Queries compiled once per shape and run with other values (the presence and webhook paths use them).

interface Tables {
  t: { id: string; n: number };
}

test('a shape runs with each call’s values, its SQL compiled once; a literal parameter is refused', async () => {
  const db = new Kysely<Tables>({ dialect: new SqliteDialect({ database: new SQLite(':memory:') }) });
  await db.schema.createTable('t').addColumn('id', 'text', (c) => c.primaryKey()).addColumn('n', 'integer').execute();
  const shapes = new QueryShapes();
  let compiled = 0;
  const insert = (rows: { id: string; n: number }[]) =>
    shapes.run(db, `insert ${rows.length}`, rows.flatMap((r) => [r.id, r.n]), () => {
      compiled++;
      return db.insertInto('t').values(rows.map((_, i) => ({ id: slot(2 * i), n: numberSlot(2 * i + 1) })));
    });
  await insert([{ id: 'a', n: 1 }]);
  await insert([{ id: 'b', n: 2 }]);
  await insert([
    { id: 'c', n: 3 },
    { id: 'd', n: 4 },
  ]);
  assert.equal(compiled, 2, 'one compilation per row count');
  // A value used twice is bound twice.
  const exactly = (n: number) =>
    shapes.run(db, 'exactly', [n], () => db.selectFrom('t').select('id').where('n', '>=', numberSlot(0)).where('n', '<=', numberSlot(0)));
  assert.deepEqual((await exactly(2)).rows, [{ id: 'b' }]);
  assert.deepEqual((await exactly(4)).rows, [{ id: 'd' }]);
  assert.deepEqual((await db.selectFrom('t').selectAll().orderBy('id').execute()).map((r) => `${r.id}${r.n}`), ['a1', 'b2', 'c3', 'd4']);
  await assert.rejects(
    shapes.run(db, 'literal', ['a'], () => db.selectFrom('t').selectAll().where('id', '=', slot(0)).where('n', '=', 1)),
    /non-slot parameter/,
  );
  await db.destroy();
});
