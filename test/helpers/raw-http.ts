import net from 'node:net';

/** One HTTP/1.1 response as it came over the wire. */
export interface WireResponse {
  readonly status: number;
  /** Header names lower-cased; a repeated header keeps its last value. */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

/** Everything a connection received, and how it ended. */
export interface WireExchange {
  /** Every byte received, as text. */
  readonly raw: string;
  readonly responses: readonly WireResponse[];
  /** True when the server closed the connection (false: the timeout cut it). */
  readonly closedByServer: boolean;
}

export interface ExchangeOptions {
  /** Half-close (FIN) after writing, keeping the connection open for reading. @default false */
  readonly halfClose?: boolean;
  /** Give up (and destroy the socket) after this long without the server closing. @default 10000 */
  readonly timeoutMs?: number;
  /** Responses to HEAD requests have no body whatever their Content-Length: their indexes in the answer order. */
  readonly headResponses?: readonly number[];
}

/**
 * Writes `bytes` on one raw TCP connection to 127.0.0.1:`port` (all in one write, so
 * pipelined requests arrive together), then reads until the server closes the connection
 * or the timeout passes. For tests that must see exactly which answers are on the wire.
 */
export function exchange(port: number, bytes: string | Buffer, options: ExchangeOptions = {}): Promise<WireExchange> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    let done = false;
    const finish = (closedByServer: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      const raw = Buffer.concat(chunks);
      try {
        resolve({ raw: raw.toString('utf8'), responses: parseResponses(raw, options.headResponses ?? []), closedByServer });
      } catch (err) {
        reject(err);
      }
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('end', () => finish(true));
    // A reset after the answers still leaves what was read.
    socket.on('error', () => finish(true));
    socket.on('close', () => finish(true));
    socket.on('connect', () => {
      socket.write(bytes);
      if (options.halfClose === true) socket.end();
    });
  });
}

/** Splits the bytes of a connection into its responses (Content-Length bodies only, as our servers send). */
export function parseResponses(raw: Buffer, headResponses: readonly number[] = []): WireResponse[] {
  const responses: WireResponse[] = [];
  let at = 0;
  while (at < raw.length) {
    const end = raw.indexOf('\r\n\r\n', at);
    if (end === -1) throw new Error(`an incomplete response head on the wire: ${JSON.stringify(raw.subarray(at, at + 300).toString('latin1'))}`);
    const [statusLine, ...lines] = raw.subarray(at, end).toString('latin1').split('\r\n');
    const match = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? '');
    if (match === null) throw new Error(`not a status line: ${JSON.stringify(statusLine)}`);
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(':');
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const length = headResponses.includes(responses.length) ? 0 : Number(headers['content-length'] ?? 0);
    responses.push({ status: Number(match[1]), headers, body: raw.subarray(end + 4, end + 4 + length).toString('utf8') });
    at = end + 4 + length;
  }
  return responses;
}

/** A request as bytes: `Host` and, with a body, `Content-Length` added. */
export function requestBytes(method: string, target: string, options: { headers?: Record<string, string>; body?: string | Buffer } = {}): Buffer {
  const body = options.body === undefined ? undefined : Buffer.from(options.body);
  const headers: Record<string, string> = { host: 'countapp.test', ...options.headers };
  if (body !== undefined && headers['transfer-encoding'] === undefined && headers['content-length'] === undefined) headers['content-length'] = String(body.length);
  const head = `${method} ${target} HTTP/1.1\r\n${Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join('')}\r\n`;
  return body === undefined ? Buffer.from(head, 'latin1') : Buffer.concat([Buffer.from(head, 'latin1'), body]);
}
