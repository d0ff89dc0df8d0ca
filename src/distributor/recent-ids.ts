/**
 * The online events one distributor handled lately, or is handling: a copy
 * of one (its acknowledgement was lost, or the sender timed out and sent it
 * again) is answered from here instead of being handled twice. Bounded: past
 * `max` the oldest handled ids are forgotten (a copy that late is rare, and
 * the SDK drops it by id anyway).
 */
export class RecentIds {
  /** Insertion order is age: a handled id is `true`, one being handled is its work. */
  private readonly ids = new Map<string, true | Promise<void>>();

  constructor(private readonly max: number) {}

  get size(): number {
    return this.ids.size;
  }

  /** `true` if handled, its work if being handled, undefined if unknown. */
  get(id: string): true | Promise<void> | undefined {
    return this.ids.get(id);
  }

  /** Records the work handling `id`; once it succeeds the id counts as handled, if it fails as unknown (a copy is handled). */
  track(id: string, work: Promise<void>): void {
    this.ids.set(id, work);
    work.then(
      () => {
        if (this.ids.get(id) !== work) return;
        // Re-inserted: its age counts from when it was handled.
        this.ids.delete(id);
        this.ids.set(id, true);
        this.trim();
      },
      () => {
        if (this.ids.get(id) === work) this.ids.delete(id);
      },
    );
    this.trim();
  }

  private trim(): void {
    if (this.ids.size <= this.max) return;
    for (const [id, state] of this.ids) {
      if (this.ids.size <= this.max) return;
      // Work in progress stays: its copies must wait for it, not run beside it.
      if (state === true) this.ids.delete(id);
    }
  }
}
