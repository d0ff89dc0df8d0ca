import { createHash } from 'node:crypto';

export interface RingMember {
  id: string;
  /** Relative capacity: a member of weight 2 owns about twice the keys of weight 1. */
  weight: number;
}

/**
 * Weighted consistent hashing with virtual nodes. Adding or removing one
 * member moves only the keys that member gains or owned, so a room's choice
 * stays put while the set of gateways changes around it.
 */
export class HashRing {
  private readonly points: { hash: number; id: string }[] = [];

  constructor(members: readonly RingMember[], private readonly pointsPerWeight = 160) {
    for (const member of members) {
      const count = Math.max(1, Math.round(member.weight * this.pointsPerWeight));
      for (let i = 0; i < count; i++) this.points.push({ hash: hash32(`${member.id}#${i}`), id: member.id });
    }
    this.points.sort((a, b) => a.hash - b.hash || (a.id < b.id ? -1 : 1));
  }

  get size(): number {
    return this.points.length;
  }

  /** The member owning `key`, or undefined for an empty ring. */
  lookup(key: string): string | undefined {
    if (this.points.length === 0) return undefined;
    const h = hash32(key);
    let lo = 0;
    let hi = this.points.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.points[mid]!.hash < h) lo = mid + 1;
      else hi = mid;
    }
    return this.points[lo === this.points.length ? 0 : lo]!.id;
  }
}

function hash32(text: string): number {
  return createHash('md5').update(text).digest().readUInt32BE(0);
}
