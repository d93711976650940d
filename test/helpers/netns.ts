import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

/**
 * A test network of "hosts" on this machine: Linux network namespaces joined by veth
 * pairs to a bridge in a hub namespace, with addresses that exist only inside them. Made
 * and removed with `ip` (iproute2) as root; nothing is added to the machine's own
 * namespace, and test traffic stays on these namespaces' addresses.
 */

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
}

/** Why namespaces cannot be made here (not Linux, not root, no `ip`, or refused), or undefined when they can. */
export function netnsUnavailable(): string | undefined {
  if (process.platform !== 'linux') return 'network namespaces are a Linux feature';
  if (process.getuid?.() !== 0) return 'making network namespaces needs root (ip netns add)';
  const probe = `countapp-probe-${process.pid}`;
  try {
    ip('netns', 'add', probe);
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim();
    return `\`ip netns add\` failed here (${stderr || (err as Error).message})`;
  }
  try {
    ip('netns', 'del', probe);
  } catch {
    // Removed below with the others at worst.
  }
  return undefined;
}

/** One host of the network: its namespace and its address on the shared link. */
export interface TestHost {
  readonly name: string;
  readonly namespace: string;
  readonly address: string;
  /** The command prefix that runs a program on this host (`ip netns exec NS`: it execs, keeping the pid). */
  readonly prefix: readonly string[];
}

export class TestNetwork {
  readonly hosts = new Map<string, TestHost>();
  readonly #namespaces: string[] = [];

  /** Makes the hub (a bridge; itself a host named `hub` at .1) and one namespace per name (.10, .11, ...). */
  static create(names: readonly string[]): TestNetwork {
    const network = new TestNetwork();
    try {
      network.#build(names);
    } catch (err) {
      network.remove();
      throw err;
    }
    return network;
  }

  #build(names: readonly string[]): void {
    const tag = randomBytes(3).toString('hex');
    // 10.231.x.0/24 lives only inside these namespaces; a random x keeps parallel runs apart.
    const subnet = `10.231.${randomBytes(1)[0]}`;
    const hub = `countapp-${tag}-hub`;
    ip('netns', 'add', hub);
    this.#namespaces.push(hub);
    ip('-n', hub, 'link', 'set', 'lo', 'up');
    ip('-n', hub, 'link', 'add', 'br0', 'type', 'bridge');
    ip('-n', hub, 'addr', 'add', `${subnet}.1/24`, 'dev', 'br0');
    ip('-n', hub, 'link', 'set', 'br0', 'up');
    this.hosts.set('hub', { name: 'hub', namespace: hub, address: `${subnet}.1`, prefix: ['ip', 'netns', 'exec', hub] });
    names.forEach((name, i) => {
      const namespace = `countapp-${tag}-${name}`;
      ip('netns', 'add', namespace);
      this.#namespaces.push(namespace);
      const address = `${subnet}.${10 + i}`;
      ip('link', 'add', `p${i}`, 'netns', hub, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', namespace);
      ip('-n', hub, 'link', 'set', `p${i}`, 'master', 'br0');
      ip('-n', hub, 'link', 'set', `p${i}`, 'up');
      ip('-n', namespace, 'link', 'set', 'lo', 'up');
      ip('-n', namespace, 'addr', 'add', `${address}/24`, 'dev', 'eth0');
      ip('-n', namespace, 'link', 'set', 'eth0', 'up');
      this.hosts.set(name, { name, namespace, address, prefix: ['ip', 'netns', 'exec', namespace] });
    });
  }

  host(name: string): TestHost {
    const host = this.hosts.get(name);
    if (host === undefined) throw new Error(`no test host ${name}`);
    return host;
  }

  /** Deletes every namespace (their veths and addresses go with them). Stop the processes in them first. */
  remove(): void {
    for (const namespace of this.#namespaces.splice(0)) {
      try {
        ip('netns', 'del', namespace);
      } catch {
        // Already gone.
      }
    }
  }
}
