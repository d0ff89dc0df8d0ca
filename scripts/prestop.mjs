// Kubernetes preStop hook: start this pod's drain and wait until it is empty,
// so that the SIGTERM that follows finds nothing left and the process exits at once.
//   MSS_OPS__TOKEN=… node scripts/prestop.mjs <port> <peers|routers>
// Returns when the count reaches 0; Kubernetes bounds the wait with terminationGracePeriodSeconds.
// Without the token the drain cannot be asked for: the hook ends at once and SIGTERM drains instead.
const [port, field] = process.argv.slice(2);
const base = `http://127.0.0.1:${port}`;
const token = process.env.MSS_OPS__TOKEN;
if (!token) {
  console.error('prestop: MSS_OPS__TOKEN is not set; leaving the drain to SIGTERM');
  process.exit(1);
}
const headers = { authorization: `Bearer ${token}` };

const started = await fetch(`${base}/drain`, { method: 'POST', headers }).catch(() => undefined);
if (started && !started.ok) {
  console.error(`prestop: POST /drain answered ${started.status}; leaving the drain to SIGTERM`);
  process.exit(1);
}
for (;;) {
  try {
    const res = await fetch(`${base}/drain`, { headers });
    if (!res.ok) break;
    if (((await res.json())[field] ?? 0) === 0) break;
  } catch {
    break; // the process is gone
  }
  await new Promise((r) => setTimeout(r, 2000));
}
