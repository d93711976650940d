import { existsSync } from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { COORDINATOR_ENTRY, stopAllClusters } from '../test/helpers/cluster.js';
import { stopAllChildren } from './child.js';
import { closeHttp } from './http.js';
import { FULL, SHORT, type Profile } from './profile.js';
import { formatTable, writeJson } from './report.js';
import type { Context, Row, SectionResult } from './result.js';
import { bigTenantSection } from './sections/big-tenant.js';
import { coldStartSection } from './sections/cold-start.js';
import { convergenceSection } from './sections/convergence.js';
import { countSection } from './sections/count-under-load.js';
import { durabilitySection } from './sections/durability.js';
import { ingestSection } from './sections/ingest.js';
import { manyTenantsSection } from './sections/many-tenants.js';
import { redisStoreSection } from './sections/redis-store.js';
import { scaleOutSection } from './sections/scale-out.js';
import { strongReadsSection } from './sections/strong-reads.js';

/**
 * `make bench` / `make bench-short`: starts real clusters from temp configs, measures,
 * prints a table of every figure next to its target, and writes bench-results/*.json.
 * The exit code is 0 when the harness worked, whatever the figures; 1 when it could not
 * measure (a cluster did not start, requests failed massively, a section threw).
 */
const SECTIONS: Record<string, { title: string; run: (ctx: Context, profile: Profile) => Promise<SectionResult> }> = {
  ingest: { title: '1. POST /items: coordinator vs minimal proxy vs direct', run: ingestSection },
  count: { title: '2. Counts under full ingest load', run: countSection },
  persist: { title: '3. Big tenant: persist and count cost', run: bigTenantSection },
  convergence: { title: '4. Convergence', run: convergenceSection },
  coldstart: { title: '5. Cold start and memory', run: coldStartSection },
  durability: { title: '6. Durable acknowledgement: fsync vs write vs off', run: durabilitySection },
  scale: { title: '7. Scale-out: 1, 2, 4, 8 workers', run: scaleOutSection },
  tenants: { title: '8. Many tenants', run: manyTenantsSection },
  redis: { title: '9. Redis store beside the files store: 1, 2, 4, 8 workers, and redis-benchmark SADD', run: redisStoreSection },
  strong: { title: '10. Strong reads: latency idle and under ingest load', run: strongReadsSection },
};

const USAGE = `Usage: node dist/bench/main.js [--short] [--only SECTION[,SECTION...]]

  --short         seconds instead of minutes, toy sizes, same code paths (CI)
  --only LIST     run only these sections: ${Object.keys(SECTIONS).join(', ')}
  --help          this text

Environment: BENCH_KEEP=1 keeps the clusters' temp folders (logs, tenant files).`;

/** The command line, or an Error whose message says what is wrong (exit code 2). */
function readArgs(argv: string[]): { profile: Profile; only: string[]; help: boolean } {
  const { values } = parseArgs({
    args: argv,
    options: {
      short: { type: 'boolean', default: false },
      only: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  let only = Object.keys(SECTIONS);
  if (values.only !== undefined) {
    only = values.only.split(',').map((s) => s.trim()).filter(Boolean);
    if (only.length === 0) throw new Error('--only needs a section name');
    const unknown = only.filter((s) => !(s in SECTIONS));
    if (unknown.length > 0) throw new Error(`unknown section(s) ${unknown.join(', ')}; known: ${Object.keys(SECTIONS).join(', ')}`);
  }
  return { profile: values.short ? SHORT : FULL, only, help: values.help };
}

/** Everything the run started, stopped: clusters gracefully (SIGTERM, SIGKILL after a timeout), helper processes, the HTTP client. */
async function stopEverything(): Promise<void> {
  await Promise.allSettled([stopAllClusters(), stopAllChildren(), closeHttp()]);
}

/** Ctrl-C or SIGTERM: stop what was started, then exit 130. A second one exits at once (the harness's exit hook still SIGKILLs every cluster process). */
function onInterrupt(): void {
  let interrupted = false;
  const handler = (signal: NodeJS.Signals): void => {
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stderr.write(`\nbench: ${signal}: stopping everything it started...\n`);
    setTimeout(() => process.exit(130), 30_000).unref();
    void stopEverything().finally(() => process.exit(130));
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}

async function main(): Promise<number> {
  let args: ReturnType<typeof readArgs>;
  try {
    args = readArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n\n${USAGE}\n`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const { profile, only } = args;
  if (!existsSync(COORDINATOR_ENTRY)) throw new Error(`${COORDINATOR_ENTRY} is missing: build first (make build)`);
  onInterrupt();
  const startedAt = new Date();
  const started = performance.now();
  const problems: string[] = [];
  const ctx: Context = {
    progress: (line) => process.stderr.write(`  ${line}\n`),
    problem: (message) => {
      problems.push(message);
      process.stderr.write(`  PROBLEM: ${message}\n`);
    },
  };
  const machine = { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? '?', memoryGiB: +(os.totalmem() / 2 ** 30).toFixed(1), node: process.version, loadAverageAtStart: os.loadavg().map((l) => +l.toFixed(2)) };
  process.stderr.write(`CountApp benchmarks (${profile.name}${only.length < Object.keys(SECTIONS).length ? `, only ${only.join(', ')}` : ''}) on ${machine.cpus} CPU(s), load average ${machine.loadAverageAtStart.join(' ')}, Node ${machine.node}\n`);

  const rows: Row[] = [];
  const raw: Record<string, unknown> = {};
  const failedSections: string[] = [];
  const sectionSeconds: Record<string, number> = {};
  for (const name of only) {
    const section = SECTIONS[name]!;
    const sectionStart = performance.now();
    process.stderr.write(`${section.title}\n`);
    try {
      const result = await section.run(ctx, profile);
      rows.push(...result.rows);
      raw[name] = result.raw;
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      problems.push(`${name}: ${message}`);
      failedSections.push(`${section.title}: FAILED (${message.split('\n')[0]})`);
      process.stderr.write(`  FAILED: ${err instanceof Error ? err.stack ?? message : message}\n`);
    }
    sectionSeconds[name] = +((performance.now() - sectionStart) / 1000).toFixed(1);
    process.stderr.write(`  (${sectionSeconds[name]} s)\n`);
  }
  const seconds = (performance.now() - started) / 1000;

  const table = formatTable(rows, failedSections);
  process.stdout.write(`\nCountApp benchmark results (${profile.name} run, ${startedAt.toISOString()}, ${seconds.toFixed(0)} s; ${machine.cpus} CPUs, load generator on the same machine)\n`);
  if (profile.name === 'short') process.stdout.write('Short mode: toy sizes and sub-second runs; the figures only show the harness works.\n');
  process.stdout.write(`${table}\n`);
  if (problems.length > 0) {
    process.stdout.write(`\nThe harness had problems (exit code 1):\n${problems.map((p) => `  - ${p.split('\n')[0]}`).join('\n')}\n`);
  }
  const file = writeJson({
    startedAt: startedAt.toISOString(),
    seconds,
    sectionSeconds,
    profile,
    sections: only,
    machine: { ...machine, loadAverageAtEnd: os.loadavg().map((l) => +l.toFixed(2)) },
    rows,
    raw,
    problems,
  }, startedAt);
  process.stdout.write(`\nJSON: ${file}\n`);
  return problems.length > 0 ? 1 : 0;
}

main().then(async (code) => {
  await stopEverything();
  process.exit(code);
}, async (err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
  await stopEverything();
  process.exit(2);
});
