import { ago, bytes, count, duration } from './format.js';
import { CoordinatorClient, describeError, foreignAnswer } from './coordinator-client.js';
import { renderTable, type Cell } from './table.js';
import { EXIT } from './usage-error.js';

/** ANSI colors of the worker states. */
const STATE_COLORS: Record<string, number> = { up: 32, starting: 33, suspect: 33, stopping: 33, 'backing-off': 31, down: 31, stopped: 31 };

interface WorkerRow {
  id: string;
  url: string;
  local: boolean;
  state: string;
  pid: number | null;
  uptime: number | null;
  restarts: number;
  lastExit: { at: string; reason: string } | null;
  nextRespawnAt: string | null;
  pendingIds: number | null;
  tenants: number | null;
  walBytes: number | null;
  lastPersist: { at: string; ms: number; ids: number; tenants: number; failedTenants: number; ok: boolean } | null;
}

/** What a round that was not ok left undone, for its cell: which tenants failed, when some did (their ids stay pending). */
function persistTrouble(round: NonNullable<WorkerRow['lastPersist']>): string {
  if (round.ok) return '';
  // `> 0`: a coordinator of an older version may not send failedTenants.
  if (round.failedTenants > 0) return `, incomplete: ${count(round.failedTenants)} tenant${round.failedTenants === 1 ? '' : 's'} failed`;
  return ', incomplete';
}

/** `countapp status`: the coordinator's `GET /status` as a table like `pm2 ls`. */
export async function statusCommand(base: string, options: { readonly json: boolean; readonly color: boolean; readonly out: (text: string) => void }): Promise<number> {
  const answer = await new CoordinatorClient(base).get('/status');
  if (answer.status !== 200) throw new Error(`GET ${base}/status answered ${describeError(answer)}`);
  // A 200 from another server (a web page at --url) is not a status to draw.
  if (!Array.isArray(answer.body?.workers)) throw new Error(`GET ${base}/status answered ${foreignAnswer(answer)}`);
  const status = answer.body;
  if (options.json) {
    options.out(`${JSON.stringify(status, null, 2)}\n`);
    return status.ready === true ? EXIT.ok : EXIT.notReady;
  }
  const workers = status.workers as WorkerRow[];
  const up = workers.filter((worker) => worker.state === 'up').length;
  const paint = (text: string, color: number): string => (options.color ? `\u001b[${color}m${text}\u001b[0m` : text);
  const readiness = status.ready === true ? paint('ready', 32) : paint(`not ready: ${status.notReadyReason}`, 31);
  const lines = [
    `CountApp ${status.version} · coordinator ${base} (pid ${status.pid}, up ${duration(status.uptime)}) · ${readiness} · ${up} of ${workers.length} workers up`,
    `config ${status.configFile} · ${count(status.itemsAccepted)} items accepted`,
  ];
  const rows = workers.map((worker): Cell[] => {
    const exit = worker.lastExit === null ? '–' : `${worker.lastExit.reason}, ${ago(worker.lastExit.at)}`;
    const respawn = worker.nextRespawnAt === null ? '' : ` (respawn in ${duration((Date.parse(worker.nextRespawnAt) - Date.now()) / 1000)})`;
    const persist = worker.lastPersist === null ? '–' : `${ago(worker.lastPersist.at)}, ${worker.lastPersist.ms} ms, ${count(worker.lastPersist.ids)} ids${persistTrouble(worker.lastPersist)}`;
    return [
      { text: worker.id },
      { text: worker.local ? worker.url : `${worker.url} (remote)` },
      { text: `${worker.state}${respawn}`, ...(STATE_COLORS[worker.state] === undefined ? {} : { color: STATE_COLORS[worker.state]! }) },
      { text: worker.pid === null ? '–' : String(worker.pid), align: 'right' },
      { text: duration(worker.uptime), align: 'right' },
      { text: String(worker.restarts), align: 'right' },
      { text: count(worker.pendingIds), align: 'right' },
      { text: count(worker.tenants), align: 'right' },
      { text: bytes(worker.walBytes), align: 'right' },
      // Red when the round left something unpersisted: its ids wait in the worker and its log.
      { text: persist, ...(worker.lastPersist === null || worker.lastPersist.ok ? {} : { color: 31 }) },
      { text: exit },
    ];
  });
  lines.push(renderTable(['worker', 'url', 'state', 'pid', 'uptime', 'restarts', 'pending', 'tenants', 'wal', 'last persist', 'last exit'], rows, { color: options.color }));
  if (status.configError !== null) lines.push(paint(`config file rejected ${ago(status.configError.at)} (the last good config is in force): ${status.configError.message}`, 31));
  options.out(`${lines.join('\n')}\n`);
  return status.ready === true ? EXIT.ok : EXIT.notReady;
}
