/**
 * Waits until `isEmpty()` holds (checked whenever `poke` is called and every
 * second) or `graceMs` passes; used by gateway and agent drains.
 */
export function waitUntilEmpty(isEmpty: () => boolean, graceMs: number): { done: Promise<'empty' | 'grace'>; poke(): void } {
  let resolveDone!: (why: 'empty' | 'grace') => void;
  const done = new Promise<'empty' | 'grace'>((r) => (resolveDone = r));
  const finish = (why: 'empty' | 'grace') => {
    clearInterval(poller);
    clearTimeout(grace);
    resolveDone(why);
  };
  const poke = () => {
    if (isEmpty()) finish('empty');
  };
  const poller = setInterval(poke, 1000);
  const grace = setTimeout(() => finish('grace'), graceMs);
  poke();
  return { done, poke };
}
