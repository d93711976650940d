import { parentPort, workerData } from 'node:worker_threads';
import type { Logger } from '../../shared/log.js';
import { decodeIdMapChunks } from './id-map.js';
import { LocalMerges } from './local-merges.js';
import type { ThreadError, ThreadReply, ThreadRequest } from './merge-thread-messages.js';

/**
 * The worker thread that writes a worker's tenant files (see threaded-merges.ts). Its
 * file calls are synchronous and may wait for the file system's journal; here they hold
 * up only this thread, never the worker's HTTP answers.
 */
const port = parentPort!;
const { database, staleMs } = workerData as { database: string; staleMs: number };

function send(reply: ThreadReply): void {
  port.postMessage(reply);
}

function errorOf(err: unknown): ThreadError {
  const e = err as { name?: string; message?: string; code?: string; file?: string } | undefined;
  return { name: e?.name ?? 'Error', message: e?.message ?? String(err), ...(e?.code === undefined ? {} : { code: e.code }), ...(e?.file === undefined ? {} : { file: e.file }) };
}

/** Log lines go to the worker's own logger (its file), in the main thread. */
const log = {
  info: (message: string) => send({ type: 'log', level: 'info', message }),
  warn: (message: string, detail?: unknown) => send({ type: 'log', level: 'warn', message: detail === undefined ? message : `${message}: ${errorOf(detail).message}` }),
  error: (message: string, detail?: unknown) => {
    send({ type: 'log', level: 'error', message: detail === undefined ? message : `${message}: ${errorOf(detail).message}` });
    return '';
  },
} as unknown as Logger;

const merges = new LocalMerges({ database, log, staleMs });

async function handle(request: ThreadRequest): Promise<void> {
  const reply = (body: Partial<ThreadReply & { type: 'done' }>): void => send({ type: 'done', id: request.id, held: merges.held(), ...body } as ThreadReply);
  try {
    switch (request.type) {
      case 'merge': {
        const map = decodeIdMapChunks(request.chunks);
        const outcome = await merges.merge(map, request.stopBy);
        // Tenants failed by one error (a stop's deadline) share its copy: the message carries it once.
        const copies = new Map<unknown, ThreadError>();
        const copyOf = (error: unknown): ThreadError => {
          let copy = copies.get(error);
          if (copy === undefined) copies.set(error, (copy = errorOf(error)));
          return copy;
        };
        reply({ written: outcome.written, failed: [...outcome.failed].map(([tenant, failure]) => [tenant, copyOf(failure.error)]) });
        return;
      }
      case 'own':
        merges.own(request.shards);
        reply({});
        return;
      case 'stale':
        merges.setStaleMs(request.ms);
        reply({});
        return;
      case 'deadline':
        merges.setDeadline(request.at);
        reply({});
        return;
      case 'repair':
        reply({ written: await merges.repair() });
        return;
      case 'checkpoint':
        await merges.checkpoint(request.sync);
        reply({});
        return;
      case 'close':
        await merges.close();
        reply({});
        return;
    }
  } catch (err) {
    reply({ error: errorOf(err) });
  }
}

port.on('message', (request: ThreadRequest) => {
  void handle(request);
});
