import fs from 'node:fs';
const dir = process.argv[2] ?? '/tmp';
const file = `${dir}/fsync-bench-${process.pid}`;
const buf = Buffer.alloc(4096, 65);
const cpu = () => process.cpuUsage();
function run(label, prealloc) {
  const fd = fs.openSync(file, 'w');
  if (prealloc) { const z = Buffer.alloc(1 << 20); for (let i = 0; i < 16; i++) fs.writeSync(fd, z); fs.fsyncSync(fd); }
  const n = 500; const c0 = cpu(); const t0 = performance.now();
  for (let i = 0; i < n; i++) { fs.writeSync(fd, buf, 0, buf.length, i * 4096); fs.fdatasyncSync(fd); }
  const dt = performance.now() - t0; const c = cpu(c0);
  console.log(label, 'wall µs/op', (dt * 1000 / n).toFixed(0), 'cpu µs/op', ((c.user + c.system) / n).toFixed(0));
  fs.closeSync(fd); fs.rmSync(file);
}
run('append     ', false); run('preallocated', true); run('append     ', false); run('preallocated', true);
