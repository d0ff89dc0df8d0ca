import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { HashRing, type RingMember, hash32 } from '../src/core/hash-ring.js';

const keys = Array.from({ length: 20_000 }, (_, i) => `room-${i.toString(16).padStart(6, '0')}`);

function owners(ring: HashRing): Map<string, string | undefined> {
  return new Map(keys.map((k) => [k, ring.lookup(k)]));
}

function shares(ring: HashRing): Map<string, number> {
  const counts = new Map<string, number>();
  for (const k of keys) {
    const id = ring.lookup(k)!;
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return new Map([...counts].map(([id, n]) => [id, n / keys.length]));
}

describe('HashRing', () => {
  test('an empty ring owns nothing', () => {
    const ring = new HashRing([]);
    assert.equal(ring.size, 0);
    assert.equal(ring.lookup('room'), undefined);
  });

  test('one member owns everything', () => {
    const ring = new HashRing([{ id: 'solo', weight: 1 }]);
    assert.ok(keys.slice(0, 500).every((k) => ring.lookup(k) === 'solo'));
  });

  test('lookups are deterministic and independent of member order', () => {
    const members: RingMember[] = [
      { id: 'gw-a', weight: 1 },
      { id: 'gw-b', weight: 2 },
      { id: 'gw-c', weight: 1 },
    ];
    const a = new HashRing(members);
    const b = new HashRing([...members].reverse());
    assert.deepEqual(owners(a), owners(b));
    assert.deepEqual(owners(a), owners(new HashRing(members)));
  });

  test('virtual nodes scale with weight; a tiny weight still gets one', () => {
    assert.equal(new HashRing([{ id: 'a', weight: 1 }], 160).size, 160);
    assert.equal(new HashRing([{ id: 'a', weight: 2.5 }, { id: 'b', weight: 1 }], 100).size, 350);
    assert.equal(new HashRing([{ id: 'a', weight: 0.0001 }]).size, 1);
  });

  test('keys spread in proportion to weight', () => {
    const ring = new HashRing([
      { id: 'w1', weight: 1 },
      { id: 'w2', weight: 2 },
      { id: 'w3', weight: 3 },
    ]);
    const s = shares(ring);
    for (const [id, expected] of [
      ['w1', 1 / 6],
      ['w2', 2 / 6],
      ['w3', 3 / 6],
    ] as const) {
      assert.ok(Math.abs(s.get(id)! - expected) < 0.05, `${id}: ${s.get(id)} vs ${expected}`);
    }
    const even = shares(new HashRing(['a', 'b', 'c', 'd'].map((id) => ({ id, weight: 1 }))));
    for (const share of even.values()) assert.ok(Math.abs(share - 0.25) < 0.05, `even share ${share}`);
  });

  test('adding a member moves only the keys it takes over', () => {
    const base: RingMember[] = ['a', 'b', 'c'].map((id) => ({ id, weight: 1 }));
    const before = owners(new HashRing(base));
    const after = owners(new HashRing([...base, { id: 'd', weight: 1 }]));
    let moved = 0;
    for (const k of keys) {
      if (before.get(k) !== after.get(k)) {
        moved++;
        assert.equal(after.get(k), 'd', `${k} moved between old members`);
      }
    }
    assert.ok(Math.abs(moved / keys.length - 0.25) < 0.06, `moved ${moved / keys.length}`);
  });

  test('removing a member moves only its keys', () => {
    const all: RingMember[] = ['a', 'b', 'c', 'd'].map((id) => ({ id, weight: 1 }));
    const before = owners(new HashRing(all));
    const after = owners(new HashRing(all.filter((m) => m.id !== 'b')));
    for (const k of keys) {
      if (before.get(k) !== 'b') assert.equal(after.get(k), before.get(k), `${k} moved though its owner stayed`);
      else assert.notEqual(after.get(k), 'b');
    }
  });

  test('changing a weight only moves keys to or from that member', () => {
    const before = owners(new HashRing(['a', 'b', 'c'].map((id) => ({ id, weight: 1 }))));
    const after = owners(
      new HashRing([
        { id: 'a', weight: 1 },
        { id: 'b', weight: 1 },
        { id: 'c', weight: 2 },
      ]),
    );
    for (const k of keys) if (before.get(k) !== after.get(k)) assert.equal(after.get(k), 'c');
  });

  test('the hash is MurmurHash3 x86_32 over UTF-8 (the published vectors), so every process computes it alike', () => {
    assert.equal(hash32(''), 0);
    assert.equal(hash32('hello'), 0x248bfa47);
    assert.equal(hash32('The quick brown fox jumps over the lazy dog'), 0x2e4ff723);
    // Non-ASCII as its UTF-8 bytes (values from an independent implementation over str.encode('utf-8')).
    assert.equal(hash32('é'), 0x10110787);
    assert.equal(hash32('ünïcødé 用户 🙂'), 0xa3a1cca2);
  });

  test('weights 1, 1, 2 share the keys within 10 % of 1:1:2', () => {
    const ring = new HashRing([
      { id: 'dist-1', weight: 1 },
      { id: 'dist-2', weight: 1 },
      { id: 'dist-3', weight: 2 },
    ]);
    const measured = shares(ring);
    const exact = ring.shares();
    for (const [id, due] of [
      ['dist-1', 0.25],
      ['dist-2', 0.25],
      ['dist-3', 0.5],
    ] as const) {
      assert.ok(Math.abs(measured.get(id)! / due - 1) < 0.1, `${id}: ${measured.get(id)} of the keys, due ${due}`);
      assert.ok(Math.abs(exact.get(id)! / due - 1) < 0.1, `${id}: ${exact.get(id)} of the hash space, due ${due}`);
    }
    assert.ok(Math.abs([...exact.values()].reduce((a, b) => a + b, 0) - 1) < 1e-9);
  });

  test('adding a member moves at most 1.1/N of the keys, all to the newcomer', () => {
    const base: RingMember[] = [
      { id: 'dist-1', weight: 1 },
      { id: 'dist-2', weight: 1 },
      { id: 'dist-3', weight: 2 },
    ];
    const before = owners(new HashRing(base));
    const after = owners(new HashRing([...base, { id: 'dist-4', weight: 1 }]));
    let moved = 0;
    for (const k of keys) {
      if (before.get(k) === after.get(k)) continue;
      moved++;
      assert.equal(after.get(k), 'dist-4', `${k} moved between old members`);
    }
    assert.ok(moved / keys.length <= 1.1 / 4, `moved ${moved / keys.length}`);
    assert.ok(moved / keys.length > 0.15, `the newcomer took its share (${moved / keys.length})`);
  });

  test('the version is a digest of the membership: equal for equal members in any order, else different', () => {
    const members: RingMember[] = [
      { id: 'a', weight: 1 },
      { id: 'b', weight: 2 },
    ];
    const version = new HashRing(members).version;
    assert.match(version, /^[0-9a-f]{8}$/);
    assert.equal(new HashRing([...members].reverse()).version, version);
    assert.notEqual(new HashRing([{ id: 'a', weight: 1 }]).version, version);
    assert.notEqual(new HashRing([{ id: 'a', weight: 1 }, { id: 'b', weight: 3 }]).version, version);
    assert.notEqual(new HashRing(members, 100).version, version);
    assert.deepEqual(new HashRing(members).members, ['a', 'b']);
  });
});
