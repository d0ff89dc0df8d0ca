// The fresh root's only way out: a TCP relay on the host end of its veth link that
// passes HTTP (port 80, by Host header) and TLS (port 443, by SNI) connections to an
// allowlist of host names (the Debian mirror, the npm registry), resolved and
// connected from the host, and refuses everything else. The fresh root's /etc/hosts
// points those names at this relay; it has no other route and no DNS.
//   node relay.mjs LISTEN_IP LOG_FILE host1,host2,...
import { appendFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';

const [listenIp, logFile, hostList] = process.argv.slice(2);
if (!listenIp || !logFile || !hostList) {
  console.error('usage: node relay.mjs LISTEN_IP LOG_FILE host1,host2,...');
  process.exit(2);
}
const allowed = new Set(hostList.split(',').map((h) => h.trim().toLowerCase()).filter(Boolean));
const log = (line) => appendFileSync(logFile, `${new Date().toISOString()} ${line}\n`);

/** Host of an HTTP/1 request head, or undefined while the head is incomplete; null when unreadable. */
function httpHost(buf) {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return buf.length > 65536 ? null : undefined;
  const m = /^host:[ \t]*([^\r\n:]+)/im.exec(buf.subarray(0, end).toString('latin1'));
  return m ? m[1].trim().toLowerCase() : null;
}

/** server_name of a TLS ClientHello, or undefined while incomplete; null when absent or unreadable. */
function tlsSni(buf) {
  if (buf.length < 5) return undefined;
  if (buf[0] !== 0x16) return null; // not a handshake record
  const recordLen = buf.readUInt16BE(3);
  if (buf.length < 5 + recordLen) return undefined;
  try {
    let p = 5;
    if (buf[p] !== 0x01) return null; // not a ClientHello
    p += 4 + 2 + 32; // handshake header, version, random
    p += 1 + buf[p]; // session id
    p += 2 + buf.readUInt16BE(p); // cipher suites
    p += 1 + buf[p]; // compression methods
    const extEnd = p + 2 + buf.readUInt16BE(p);
    p += 2;
    while (p + 4 <= extEnd) {
      const type = buf.readUInt16BE(p);
      const len = buf.readUInt16BE(p + 2);
      p += 4;
      if (type === 0) {
        // server_name: list length, then (type 0 = host_name, length, name)
        let q = p + 2;
        while (q + 3 <= p + len) {
          const nameType = buf[q];
          const nameLen = buf.readUInt16BE(q + 1);
          if (nameType === 0) return buf.subarray(q + 3, q + 3 + nameLen).toString('ascii').toLowerCase();
          q += 3 + nameLen;
        }
        return null;
      }
      p += len;
    }
    return null;
  } catch {
    return null;
  }
}

function relay(port, readName) {
  const server = createServer((client) => {
    let head = Buffer.alloc(0);
    const from = `${client.remoteAddress}:${client.remotePort}`;
    client.setTimeout(30_000, () => client.destroy());
    client.on('error', () => undefined);
    const onData = (chunk) => {
      head = Buffer.concat([head, chunk]);
      const name = readName(head);
      if (name === undefined) return;
      client.off('data', onData);
      client.pause();
      if (!name || !allowed.has(name)) {
        log(`deny  ${from} -> ${name ?? '(no name)'}:${port}`);
        client.destroy();
        return;
      }
      log(`allow ${from} -> ${name}:${port}`);
      client.setTimeout(0);
      const upstream = connect(port, name);
      upstream.on('error', (err) => {
        log(`error ${name}:${port}: ${err.message}`);
        client.destroy();
      });
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
      upstream.write(head);
      client.pipe(upstream).pipe(client);
      client.resume();
    };
    client.on('data', onData);
  });
  server.on('error', (err) => {
    console.error(`relay: cannot listen on ${listenIp}:${port}: ${err.message}`);
    process.exit(1);
  });
  server.listen(port, listenIp);
  return server;
}

relay(80, httpHost);
relay(443, tlsSni);
log(`relay up on ${listenIp}:80,443 for ${[...allowed].join(', ')}`);
process.on('SIGTERM', () => process.exit(0));
