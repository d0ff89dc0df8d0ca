/** Requests per agent: the first one pays for DNS and the TCP (and TLS) handshake, later ones reuse the kept-alive connection. */
const ATTEMPTS = 3;

/**
 * Measures this client's round-trip time (ms) to each media agent, for
 * TTL-BEST rooms where the gateway places the peer on the nearest agent.
 *
 * All agents are measured at once; each gets up to 3 sequential GETs on its
 * probe URL (answered `204` with CORS and `no-store`). The RTT is the
 * *minimum* duration: the first request includes the connection setup and
 * any request can be delayed by a busy main thread or a lost packet, so the
 * fastest of several approximates one network round trip best.
 *
 * The whole measurement is bounded by `timeoutMs` (joining waits for it):
 * then outstanding requests are aborted, an agent that never answered (or
 * answered with an error status) is left out, and one that answered at
 * least once keeps its best value. Never throws; works in browsers and in
 * Node ≥ 18 (global fetch).
 */
export async function measureAgentRtts(
  probes: readonly { agentId: string; url: string }[],
  timeoutMs: number,
  fetchImpl: typeof fetch = globalThis.fetch,
): Promise<Record<string, number>> {
  const rtts: Record<string, number> = {};
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), Math.max(0, timeoutMs));
  const measure = async ({ agentId, url }: { agentId: string; url: string }): Promise<void> => {
    for (let i = 0; i < ATTEMPTS && !controller.signal.aborted; i++) {
      const start = performance.now();
      const response = await fetchImpl(url, { cache: 'no-store', mode: 'cors', signal: controller.signal });
      const rtt = performance.now() - start;
      if (!response.ok || controller.signal.aborted) return;
      rtts[agentId] = Math.min(rtts[agentId] ?? Infinity, rtt);
      // Drain the (empty) body and yield a task, so the connection is back in the pool
      // for the next attempt (Node's fetch opens a second one otherwise).
      await response.arrayBuffer();
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
  };
  // Returns at the deadline even if a fetch implementation ignores the signal.
  const deadline = new Promise<void>((resolve) => controller.signal.addEventListener('abort', () => resolve(), { once: true }));
  try {
    // Each agent's failure (abort, refused connection, CORS, bad URL) only ends that agent's measurement.
    await Promise.race([Promise.all(probes.map((probe) => measure(probe).catch(() => undefined))), deadline]);
  } catch {
    // `probes` is not an array: nothing to measure.
  } finally {
    clearTimeout(timer);
  }
  return rtts;
}
