/** The part of the `hashring` package (dev dependency, no types of its own) bench/distributor.ts compares against. */
declare module 'hashring' {
  export default class HashRing {
    constructor(servers: string[] | Record<string, { weight?: number; vnodes?: number }>, algorithm?: string, options?: Record<string, unknown>);
    get(key: string): string;
  }
}
