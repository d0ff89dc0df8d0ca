/**
 * `load` run once for every caller while it is in flight, and its result
 * reused for `reuseMs` after it settled successfully; a failure is not kept.
 */
export function sharedResult<T>(load: () => Promise<T>, reuseMs: number): () => Promise<T> {
  let current: { result: Promise<T>; settledAt?: number } | undefined;
  return () => {
    if (current && (current.settledAt === undefined || Date.now() - current.settledAt < reuseMs)) return current.result;
    const entry: { result: Promise<T>; settledAt?: number } = { result: load() };
    current = entry;
    entry.result.then(
      () => {
        entry.settledAt = Date.now();
      },
      () => {
        if (current === entry) current = undefined;
      },
    );
    return entry.result;
  };
}
