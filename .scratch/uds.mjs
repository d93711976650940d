import http from 'node:http';
import { fork } from 'node:child_process';
import fs from 'node:fs';
import { Pool } from 'undici';
const mode = process.argv[2];
if (process.argv[3] === 'server') {
  const server = http.createServer((req, res) => { const chunks = []; req.on('data', (c) => chunks.push(c)); req.on('end', () => { res.writeHead(200, { 'content-type': 'application/json', 'content-length': 14 }); res.end('{"accepted":1}'); }); });
  server.keepAliveTimeout = 65000;
  if (mode === 'uds') server.listen({ path: '\0uds-bench-' + process.pid }, () => process.send('\0uds-bench-' + process.pid));
  else server.listen(0, '127.0.0.1', () => process.send(String(server.address().port)));
} else {
  const child = fork(new URL(import.meta.url).pathname, [mode, 'server']);
  const where = await new Promise((r) => child.once('message', r));
  const pool = mode === 'uds' ? new Pool('http://localhost', { socketPath: where, connections: 16 }) : new Pool(`http://127.0.0.1:${where}`, { connections: 16 });
  const body = Buffer.from('x'.repeat(4300));
  const cpu = (pid) => { const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8'); const f = st.slice(st.lastIndexOf(')') + 2).split(' '); return (Number(f[11]) + Number(f[12])) * 10; };
  const c0 = cpu(process.pid), s0 = cpu(child.pid);
  let n = 0; const end = Date.now() + 5000;
  await Promise.all(Array.from({ length: 16 }, async () => { while (Date.now() < end) { const r = await pool.request({ method: 'POST', path: '/items', body }); await r.body.text(); n++; } }));
  console.log(mode, 'req/s', n / 5, 'client µs/req', ((cpu(process.pid) - c0) * 1000 / n).toFixed(1), 'server µs/req', ((cpu(child.pid) - s0) * 1000 / n).toFixed(1));
  child.kill(); await pool.close();
}
