export interface RingMember {
  id: string;
  /** Relative capacity: a member of weight 2 owns about twice the keys of weight 1. */
  weight: number;
}

/**
 * Virtual nodes per unit of weight. A member's share is the sum of its points' arcs, whose spread
 * shrinks as 1/√points: 1000 keep a weight-1 member within ~3 % of its due share (1 σ), so the
 * shares of weights 1, 1, 2 stay well within 10 % of 1:1:2.
 */
export const DEFAULT_POINTS_PER_WEIGHT = 1000;

/**
 * Weighted consistent hashing with virtual nodes. Adding or removing one
 * member moves only the keys that member gains or owned, so a room's (or a
 * user's) owner stays put while the set of members changes around it.
 *
 * Every process computes the same ring from the same members: the hash is
 * murmur3 (32-bit) over the UTF-8 bytes of the text, the same in every
 * runtime; points are sorted by hash, ties by member id. Lookups are one hash
 * and a binary search over a typed array.
 */
export class HashRing {
  /** Point hashes, ascending. */
  private readonly hashes: Uint32Array;
  /** The member (index into `ids`) of each point. */
  private readonly owners: Uint32Array;
  private readonly ids: string[];
  /** A short digest of the membership (ids, weights, points per weight): equal versions, equal rings. */
  readonly version: string;

  constructor(members: readonly RingMember[], private readonly pointsPerWeight = DEFAULT_POINTS_PER_WEIGHT) {
    // Sorted by id so the member order given never matters (the version and the tie-breaks depend on it).
    const sorted = [...members].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    this.ids = sorted.map((m) => m.id);
    const counts = sorted.map((m) => Math.max(1, Math.round(m.weight * this.pointsPerWeight)));
    const total = counts.reduce((a, b) => a + b, 0);
    const pointHashes = new Uint32Array(total);
    const pointOwners = new Uint32Array(total);
    let n = 0;
    sorted.forEach((member, index) => {
      for (let i = 0; i < counts[index]!; i++) {
        pointHashes[n] = hash32(`${member.id}#${i}`);
        pointOwners[n++] = index;
      }
    });
    // Owners ascend with ids, so sorting by (hash, owner) breaks a collision by id in every process.
    const order = Array.from({ length: total }, (_, i) => i).sort(
      (a, b) => pointHashes[a]! - pointHashes[b]! || pointOwners[a]! - pointOwners[b]!,
    );
    this.hashes = new Uint32Array(total);
    this.owners = new Uint32Array(total);
    order.forEach((from, to) => {
      this.hashes[to] = pointHashes[from]!;
      this.owners[to] = pointOwners[from]!;
    });
    this.version = hash32(`${this.pointsPerWeight}|${sorted.map((m) => `${m.id}=${m.weight}`).join('|')}`)
      .toString(16)
      .padStart(8, '0');
  }

  /** Points on the ring (virtual nodes of every member). */
  get size(): number {
    return this.hashes.length;
  }

  /** The members' ids, sorted. */
  get members(): readonly string[] {
    return this.ids;
  }

  /** The member owning `key`, or undefined for an empty ring. */
  lookup(key: string): string | undefined {
    const hashes = this.hashes;
    const n = hashes.length;
    if (n === 0) return undefined;
    const h = hash32(key);
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (hashes[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    return this.ids[this.owners[lo === n ? 0 : lo]!];
  }

  /** Each member's share of the hash space (what fraction of uniformly spread keys it owns). */
  shares(): Map<string, number> {
    const shares = new Map(this.ids.map((id) => [id, 0]));
    const n = this.hashes.length;
    for (let i = 0; i < n; i++) {
      // Point i owns the arc from the previous point (exclusive) up to itself; point 0 also the wrap-around.
      const from = i === 0 ? this.hashes[n - 1]! - 2 ** 32 : this.hashes[i - 1]!;
      const id = this.ids[this.owners[i]!]!;
      shares.set(id, shares.get(id)! + (this.hashes[i]! - from) / 2 ** 32);
    }
    return shares;
  }
}

const utf8 = new TextEncoder();
/** Where non-ASCII keys are encoded: reused (lookups are synchronous), grown to the longest key seen. */
let scratch = new Uint8Array(256);

/**
 * MurmurHash3 (x86, 32-bit, seed 0) of the text's UTF-8 bytes: fast, well mixed (its finalizer
 * spreads near-identical keys such as `gw-a#1`, `gw-a#2`), and the same value in every process.
 */
export function hash32(text: string): number {
  // ASCII is hashed straight from the char codes; anything else is encoded first.
  let ascii = true;
  for (let i = 0; i < text.length; i++) {
    if (text.charCodeAt(i) > 0x7f) {
      ascii = false;
      break;
    }
  }
  if (ascii) return murmur3(text.length, (i) => text.charCodeAt(i));
  if (scratch.length < text.length * 3) scratch = new Uint8Array(text.length * 3);
  const { written } = utf8.encodeInto(text, scratch);
  const bytes = scratch;
  return murmur3(written, (i) => bytes[i]!);
}

function murmur3(length: number, byteAt: (i: number) => number): number {
  const c1 = 0xcc9e2d51;
  const c2 = 0x1b873593;
  let h = 0;
  const blocks = length & ~3;
  for (let i = 0; i < blocks; i += 4) {
    let k = byteAt(i) | (byteAt(i + 1) << 8) | (byteAt(i + 2) << 16) | (byteAt(i + 3) << 24);
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  let k = 0;
  switch (length & 3) {
    case 3:
      k ^= byteAt(blocks + 2) << 16;
    // falls through
    case 2:
      k ^= byteAt(blocks + 1) << 8;
    // falls through
    case 1:
      k ^= byteAt(blocks);
      k = Math.imul(k, c1);
      k = (k << 15) | (k >>> 17);
      k = Math.imul(k, c2);
      h ^= k;
  }
  h ^= length;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
