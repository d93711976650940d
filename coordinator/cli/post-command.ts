import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { count } from './format.js';
import { CoordinatorClient, UnreachableError, countAppError, describeError, type Answer } from './coordinator-client.js';
import { EXIT } from './usage-error.js';

export interface PostOptions {
  /** Items per batch. */
  readonly batch: number;
  /** Batches in flight at once. */
  readonly concurrency: number;
  /** Where the summary goes (stdout). */
  readonly out: (text: string) => void;
  /** Where problems and the progress line go (stderr). */
  readonly err: (text: string) => void;
  /** The progress line is rewritten in place (stderr is a terminal); otherwise a line every PROGRESS_LINE_MS. */
  readonly tty: boolean;
  /** Standard input, for `-`. @default process.stdin */
  readonly stdin?: Readable;
  /** How often the progress line is written. @default 250 ms on a terminal, else 5 s */
  readonly progressMs?: number;
  /** The first pause before retrying an unavailable cluster; it doubles each time. @default 500 */
  readonly firstRetryMs?: number;
}

/** One item to send and where it came from (`line 12`, `item 7`), for the messages about it. */
interface Entry {
  readonly item: unknown;
  readonly from: string;
}

/** A batch refused for being unavailable (503, 504, no answer) is tried this many times in all. */
const ATTEMPTS = 6;
const FIRST_RETRY_MS = 500;
const PROGRESS_TTY_MS = 250;
const PROGRESS_LINE_MS = 5_000;

class Tally {
  read = 0;
  accepted = 0;
  refused = 0;
  failed = 0;
  skipped = 0;
  batches = 0;
}

/**
 * Sends batches with at most `concurrency` in flight. A refused item (400 with `index`) is
 * reported by where it came from and left out, the rest of its batch sent again; a batch
 * too large (413, too_many_items) is split; an unavailable cluster (503, 504, unreachable)
 * is retried with backoff — retrying is safe, an item sent twice counts once. Only
 * CountApp's own answers count: `{"accepted":N}` is stored, one of its JSON errors is
 * refused; anything else (another server at --url, a proxy's error page) is not stored.
 */
class Poster {
  readonly #client: CoordinatorClient;
  readonly #options: PostOptions;
  readonly #tally: Tally;
  readonly #inFlight = new Set<Promise<void>>();

  constructor(client: CoordinatorClient, options: PostOptions, tally: Tally) {
    this.#client = client;
    this.#options = options;
    this.#tally = tally;
  }

  /** Sends one batch, waiting first while `concurrency` are in flight. */
  async add(entries: Entry[]): Promise<void> {
    while (this.#inFlight.size >= this.#options.concurrency) await Promise.race(this.#inFlight);
    this.#tally.batches++;
    const sending = this.#send(entries).finally(() => this.#inFlight.delete(sending));
    this.#inFlight.add(sending);
  }

  async drain(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.race(this.#inFlight);
  }

  async #send(entries: Entry[]): Promise<void> {
    let pending = entries;
    for (let attempt = 1; pending.length > 0; attempt++) {
      let answer: Answer;
      try {
        answer = await this.#client.post('/items', JSON.stringify(pending.map((entry) => entry.item)));
      } catch (err) {
        if (!(err instanceof UnreachableError)) throw err;
        answer = { status: 0, body: err.message };
      }
      const code: unknown = answer.body?.error?.code;
      if (answer.status === 200 && typeof answer.body?.accepted === 'number') {
        this.#tally.accepted += pending.length;
        return;
      }
      if (answer.status === 400 && typeof answer.body?.error?.index === 'number' && pending[answer.body.error.index] !== undefined) {
        const index: number = answer.body.error.index;
        this.#tally.refused++;
        // The server numbers the item within the batch; where it came from says more.
        this.#options.err(`countapp post: ${pending[index]!.from} refused: ${String(answer.body.error.message).replace(/^Item \d+: /, '')}\n`);
        pending = pending.filter((_, i) => i !== index);
        attempt = 0;
        continue;
      }
      if ((answer.status === 413 || code === 'too_many_items') && pending.length > 1) {
        const half = Math.ceil(pending.length / 2);
        await this.#send(pending.slice(0, half));
        await this.#send(pending.slice(half));
        return;
      }
      const unavailable = answer.status === 0 || answer.status === 503 || answer.status === 504;
      if (unavailable && attempt < ATTEMPTS) {
        await sleep((this.#options.firstRetryMs ?? FIRST_RETRY_MS) * 2 ** (attempt - 1));
        continue;
      }
      const reason = answer.status === 0 ? String(answer.body) : describeError(answer);
      const range = pending.length === 1 ? pending[0]!.from : `${pending[0]!.from} to ${pending.at(-1)!.from}`;
      if (unavailable) {
        this.#tally.failed += pending.length;
        this.#options.err(`countapp post: ${pending.length} item(s) (${range}) not stored after ${ATTEMPTS} attempts: ${reason}\n`);
      } else if (countAppError(answer) === undefined) {
        // Not CountApp's answer (another server's 501 page, a 200 without `accepted`): no
        // coordinator said it stored them, nor refused them for what they are. Not stored
        // (behind a proxy's own error they may have been; sending them again is safe).
        this.#tally.failed += pending.length;
        this.#options.err(`countapp post: ${pending.length} item(s) (${range}) not stored: ${reason}\n`);
      } else {
        this.#tally.refused += pending.length;
        this.#options.err(`countapp post: ${pending.length} item(s) (${range}) refused: ${reason}\n`);
      }
      return;
    }
  }
}

/** The input, chunk by chunk, as text: a file, or standard input for `-`. */
function open(file: string, stdin: Readable): Readable {
  const stream = file === '-' ? stdin : createReadStream(file);
  stream.setEncoding('utf8');
  return stream;
}

/** Reads JSON Lines (an item, or an array of items, per line) or one JSON array; yields entries. */
async function* entriesOf(stream: Readable, tally: Tally, err: (text: string) => void): AsyncGenerator<Entry> {
  const lines = createInterface({ input: stream, crlfDelay: Infinity });
  let lineNo = 0;
  let arrayText: string[] | undefined;
  for await (const line of lines) {
    lineNo++;
    if (arrayText !== undefined) {
      arrayText.push(line);
      continue;
    }
    const trimmed = line.trim();
    if (trimmed === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(trimmed);
    } catch (error) {
      // A JSON array spread over several lines: gather the rest and parse it whole.
      if (trimmed.startsWith('[') && tally.read === 0 && tally.skipped === 0) {
        arrayText = [line];
        continue;
      }
      tally.skipped++;
      err(`countapp post: line ${lineNo} skipped: not JSON (${(error as Error).message})\n`);
      continue;
    }
    yield* itemsOf(value, `line ${lineNo}`, tally, err);
  }
  if (arrayText === undefined) return;
  let value: unknown;
  try {
    value = JSON.parse(arrayText.join('\n'));
  } catch (error) {
    throw new Error(`the input is neither JSON Lines nor one JSON array: ${(error as Error).message}`);
  }
  yield* itemsOf(value, undefined, tally, err);
}

/** The items of one parsed value: an object is one item, an array holds items (`item N` of the whole input when `from` is undefined). */
function* itemsOf(value: unknown, from: string | undefined, tally: Tally, err: (text: string) => void): Generator<Entry> {
  const list = Array.isArray(value) ? value : [value];
  for (let i = 0; i < list.length; i++) {
    const item = list[i];
    const where = from === undefined ? `item ${i + 1}` : Array.isArray(value) ? `${from} item ${i + 1}` : from;
    if (item === null || typeof item !== 'object' || Array.isArray(item)) {
      tally.skipped++;
      err(`countapp post: ${where} skipped: an item is an object {"id": ..., "tenant": ...}\n`);
      continue;
    }
    tally.read++;
    yield { item, from: where };
  }
}

/**
 * `countapp post FILE|-`: reads items (JSON Lines, or one JSON array), posts them in
 * batches with a progress line on stderr, and prints a summary. Exit 0 when every item
 * read was stored, 1 otherwise (what was refused or not stored is on stderr, by line).
 */
export async function postCommand(base: string, file: string, options: PostOptions): Promise<number> {
  const tally = new Tally();
  const started = performance.now();
  const elapsed = (): number => (performance.now() - started) / 1000;
  const rate = (): string => count(Math.round(tally.accepted / Math.max(elapsed(), 0.001)));
  const progressText = (): string => `${count(tally.read)} items read, ${count(tally.accepted)} stored · ${rate()} items/s · ${count(tally.refused)} refused · ${count(tally.failed)} failed`;
  let shown = false;
  const progress = setInterval(() => {
    options.err(options.tty ? `\r\u001b[2K${progressText()}` : `${progressText()}\n`);
    shown = true;
  }, options.progressMs ?? (options.tty ? PROGRESS_TTY_MS : PROGRESS_LINE_MS));
  progress.unref();
  const poster = new Poster(new CoordinatorClient(base), options, tally);
  try {
    let batch: Entry[] = [];
    for await (const entry of entriesOf(open(file, options.stdin ?? process.stdin), tally, options.err)) {
      batch.push(entry);
      if (batch.length >= options.batch) {
        await poster.add(batch);
        batch = [];
      }
    }
    if (batch.length > 0) await poster.add(batch);
  } finally {
    await poster.drain();
    clearInterval(progress);
    if (shown && options.tty) options.err('\r\u001b[2K');
  }
  const source = file === '-' ? 'standard input' : file;
  options.out(`posted ${count(tally.read)} items from ${source} in ${count(tally.batches)} ${tally.batches === 1 ? 'batch' : 'batches'}, ${elapsed().toFixed(1)} s (${rate()} items/s): ${count(tally.accepted)} stored, ${count(tally.refused)} refused, ${count(tally.failed)} not stored, ${count(tally.skipped)} skipped\n`);
  return tally.accepted === tally.read && tally.skipped === 0 ? EXIT.ok : EXIT.failed;
}
