/**
 * Request bodies for the load tests: batches of `{"id","tenant"}` items over many tenants
 * with a realistic share of repeats. Each item is, with probability `repeatRate`, an
 * item sent earlier (picked from a ring of recent ones) and otherwise a new id; its
 * tenant is one of `tenants`. Bodies are built as strings from pre-rendered fragments,
 * so the generator stays cheap next to the servers under test.
 */
export interface WorkloadOptions {
  /** Number of distinct tenants. @default 1000 */
  readonly tenants?: number;
  /** Share of items that repeat an earlier one. @default 0.2 */
  readonly repeatRate?: number;
  /** Makes ids unique across generators (and runs against the same database). */
  readonly prefix: string;
  /** How many recent items a repeat is drawn from. @default 65536 */
  readonly memory?: number;
}

export class Workload {
  readonly #tenantParts: string[];
  readonly #repeatRate: number;
  readonly #prefix: string;
  readonly #ring: string[];
  #ringFill = 0;
  #ringNext = 0;
  #next = 0;
  /** Items produced, and how many of them were repeats. */
  items = 0;
  repeats = 0;

  constructor(options: WorkloadOptions) {
    const tenants = options.tenants ?? 1000;
    this.#tenantParts = Array.from({ length: tenants }, (_, i) => `","tenant":"t${i}"}`);
    this.#repeatRate = options.repeatRate ?? 0.2;
    this.#prefix = `{"id":"${options.prefix}`;
    this.#ring = new Array<string>(options.memory ?? 65_536);
  }

  /** One item as JSON text. */
  item(): string {
    this.items++;
    if (this.#ringFill > 0 && Math.random() < this.#repeatRate) {
      this.repeats++;
      return this.#ring[Math.floor(Math.random() * this.#ringFill)]!;
    }
    const tenant = this.#tenantParts[Math.floor(Math.random() * this.#tenantParts.length)]!;
    const text = this.#prefix + (this.#next++).toString(36) + tenant;
    this.#ring[this.#ringNext] = text;
    this.#ringNext = (this.#ringNext + 1) % this.#ring.length;
    if (this.#ringFill < this.#ring.length) this.#ringFill++;
    return text;
  }

  /** A JSON array of `size` items. */
  batch(size: number): string {
    if (size === 1) return `[${this.item()}]`;
    let body = '[';
    for (let i = 0; i < size; i++) body += (i === 0 ? '' : ',') + this.item();
    return `${body}]`;
  }
}

/** `count` distinct ids of one tenant, as `size`-item bodies. */
export function* distinctBatches(tenant: string | ((i: number) => string), prefix: string, count: number, size: number): Generator<{ body: string; items: number }> {
  const tenantOf = typeof tenant === 'string' ? () => tenant : tenant;
  for (let start = 0; start < count; start += size) {
    const n = Math.min(size, count - start);
    const parts = new Array<string>(n);
    for (let i = 0; i < n; i++) parts[i] = JSON.stringify({ id: `${prefix}${start + i}`, tenant: tenantOf(start + i) });
    yield { body: `[${parts.join(',')}]`, items: n };
  }
}
