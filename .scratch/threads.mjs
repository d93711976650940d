import fs from 'node:fs';
import { startCluster } from '/work/main/dist/test/helpers/cluster.js';
import { Pool } from 'undici';
const N = Number(process.argv[2] ?? 4);
const cluster = await startCluster({ workers: N, fastTimings: false, config: { worker_persist: 1, config_check: 1, durability: process.argv[3] ?? 'fsync' } });
const pids = await cluster.workerPids();
function threads(pid) { const out = {}; for (const tid of fs.readdirSync(`/proc/${pid}/task`)) { try { const st = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8'); const name = st.slice(st.indexOf('(')+1, st.lastIndexOf(')')); const f = st.slice(st.lastIndexOf(')')+2).split(' '); out[`${tid === String(pid) ? 'main' : 'tid' + tid}`] = (Number(f[11]) + Number(f[12])); } catch {} } return out; }
const before = pids.map(threads); const cBefore = threads(cluster.pid);
let next = 0; let acked = 0;
const pool = new Pool(cluster.url, { connections: 16 });
const end = Date.now() + 10000;
const lane = async () => { while (Date.now() < end) { let b = '['; for (let i = 0; i < 100; i++) { const n = next++; b += (i ? ',' : '') + `{"id":"x${n.toString(36)}","tenant":"t${n % 1000}"}`; } b += ']'; const r = await pool.request({ method: 'POST', path: '/items', body: b, headers: { 'content-type': 'application/json' } }); await r.body.dump(); if (r.statusCode === 200) acked += 100; } };
await Promise.all(Array.from({ length: 16 }, lane));
await new Promise(r => setTimeout(r, 2500));
const after = pids.map(threads); const cAfter = threads(cluster.pid);
const sum = {};
for (let i = 0; i < pids.length; i++) { const deltas = Object.entries(after[i]).map(([k, v]) => [k, v - (before[i][k] ?? 0)]).sort((a, b) => b[1] - a[1]); deltas.forEach(([k, v], rank) => { const key = k === 'main' ? 'main' : `other#${rank}`; sum[key] = (sum[key] ?? 0) + v; }); }
console.log('acked', acked, 'items/s', acked / 10);
console.log('worker threads µs/item:', Object.fromEntries(Object.entries(sum).map(([k, v]) => [k, (v * 10000 / acked).toFixed(2)])));
console.log('coordinator threads µs/item:', Object.fromEntries(Object.entries(cAfter).map(([k, v]) => [k, ((v - (cBefore[k] ?? 0)) * 10000 / acked).toFixed(2)])));
await pool.close(); await cluster.cleanup();
