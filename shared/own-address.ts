import net from 'node:net';
import os from 'node:os';

/**
 * Whether an address names this machine as a server listening on a given address would be
 * reached by it: used to refuse a `workers` entry that is the coordinator itself under any
 * spelling (`127.1`, `2130706433`, `[::ffff:127.0.0.1]`, `0.0.0.0`, `[::]`, `localhost`,
 * the machine's name or interface addresses...). The WHATWG URL parser has already turned
 * the odd IPv4 forms into dotted quads and compressed IPv6; this compares what is left.
 */

type Address =
  | { readonly kind: 'v4'; readonly octets: readonly number[] }
  | { readonly kind: 'v6'; readonly groups: readonly number[] }
  | { readonly kind: 'name'; readonly name: string };

function parseV4(text: string): number[] {
  return text.split('.').map(Number);
}

/** `::ffff:7f00:1` → 8 groups of 16 bits; the last two may be written as a dotted quad. */
function parseV6(address: string): number[] {
  let text = address;
  const lastColon = text.lastIndexOf(':');
  const last = text.slice(lastColon + 1);
  if (last.includes('.')) {
    const [a, b, c, d] = parseV4(last) as [number, number, number, number];
    text = `${text.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const hex = (part: string): number[] => (part === '' ? [] : part.split(':').map((group) => parseInt(group, 16)));
  const gap = text.indexOf('::');
  if (gap === -1) return hex(text);
  const left = hex(text.slice(0, gap));
  const right = hex(text.slice(gap + 2));
  return [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
}

/** An IPv6 address that carries an IPv4 one (mapped `::ffff:a.b.c.d`, or the old compatible `::a.b.c.d`). */
function embeddedV4(groups: readonly number[]): number[] | undefined {
  if (groups.slice(0, 5).some((group) => group !== 0)) return undefined;
  if (groups[5] !== 0xffff && groups[5] !== 0) return undefined;
  if (groups[5] === 0 && groups[6] === 0) return undefined; // :: and ::1 are IPv6's own
  return [groups[6]! >> 8, groups[6]! & 0xff, groups[7]! >> 8, groups[7]! & 0xff];
}

/**
 * The dotted quad an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, `[::ffff:7f00:1]`, with or
 * without brackets) stands for, else undefined: connecting to it reaches that IPv4 address, so
 * the config counts it as that address (repeats, loopback). The old compatible form
 * (`::a.b.c.d`) is left alone: nothing routes it to IPv4 any more.
 */
export function mappedIPv4(host: string): string | undefined {
  const text = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (!net.isIPv6(text)) return undefined;
  const groups = parseV6(text.toLowerCase());
  return groups[5] === 0xffff ? embeddedV4(groups)?.join('.') : undefined;
}

function parse(host: string): Address {
  let text = host.toLowerCase();
  if (text.startsWith('[') && text.endsWith(']')) text = text.slice(1, -1);
  const zone = text.indexOf('%');
  if (zone !== -1) text = text.slice(0, zone);
  if (net.isIPv4(text)) return { kind: 'v4', octets: parseV4(text) };
  if (net.isIPv6(text)) {
    const groups = parseV6(text);
    const v4 = embeddedV4(groups);
    return v4 === undefined ? { kind: 'v6', groups } : { kind: 'v4', octets: v4 };
  }
  return { kind: 'name', name: text.endsWith('.') ? text.slice(0, -1) : text };
}

function isLoopback(address: Address): boolean {
  if (address.kind === 'v4') return address.octets[0] === 127;
  if (address.kind === 'v6') return address.groups.every((group, i) => group === (i === 7 ? 1 : 0));
  return address.name === 'localhost' || address.name.endsWith('.localhost');
}

/** 0.0.0.0 and `::`: listening there means every interface; connecting there reaches this machine. */
function isUnspecified(address: Address): boolean {
  if (address.kind === 'v4') return address.octets.every((octet) => octet === 0);
  if (address.kind === 'v6') return address.groups.every((group) => group === 0);
  return false;
}

function key(address: Address): string {
  if (address.kind === 'v4') return address.octets.join('.');
  if (address.kind === 'v6') return address.groups.map((group) => group.toString(16)).join(':');
  return address.name;
}

/** This machine's own names and interface addresses (besides loopback). */
function machineKeys(): Set<string> {
  const keys = new Set<string>();
  try {
    keys.add(key(parse(os.hostname())));
  } catch {
    // No hostname: nothing to add.
  }
  for (const list of Object.values(os.networkInterfaces())) {
    for (const entry of list ?? []) keys.add(key(parse(entry.address)));
  }
  return keys;
}

/**
 * True when connecting to `host` would reach a server of this machine listening on
 * `listenHost` (both as written in a URL or the config: names, IPv4, IPv6 with or without
 * brackets). Conservative: every loopback spelling counts for a loopback listener, and
 * every address and name of this machine for one on all interfaces.
 */
export function reachesListener(host: string, listenHost: string): boolean {
  const target = parse(host);
  const listener = parse(listenHost);
  if (isUnspecified(listener)) {
    return isLoopback(target) || isUnspecified(target) || machineKeys().has(key(target));
  }
  if (isLoopback(listener)) {
    return isLoopback(target) || isUnspecified(target) || (target.kind === 'name' && machineKeys().has(key(target)));
  }
  return key(target) === key(listener);
}
