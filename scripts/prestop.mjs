// Kubernetes preStop hook: start this pod's drain and wait until it is empty,
// so that the SIGTERM that follows finds nothing left and the process exits at once.
//   node scripts/prestop.mjs <port> <peers|rooms>
// Returns when the count reaches 0; Kubernetes bounds the wait with terminationGracePeriodSeconds.
const [port, field] = process.argv.slice(2);
const base = `http://127.0.0.1:${port}`;
await fetch(`${base}/drain`, { method: 'POST' }).catch(() => undefined);
for (;;) {
  try {
    const health = await (await fetch(`${base}/health`)).json();
    if ((health[field] ?? 0) === 0) break;
  } catch {
    break; // the process is gone
  }
  await new Promise((r) => setTimeout(r, 2000));
}
