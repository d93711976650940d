import { CoordinatorClient, describeError } from './coordinator-client.js';
import { EXIT } from './usage-error.js';

/**
 * `countapp count TENANT...`: each tenant's count, one `TENANT<TAB>COUNT` line each (or one
 * JSON object with `--json`), in the order given. A tenant the coordinator refuses (an
 * invalid name) is reported on stderr and the others still printed; the exit code is 1 then.
 */
export async function countCommand(base: string, tenants: readonly string[], options: { readonly json: boolean; readonly out: (text: string) => void; readonly err: (text: string) => void }): Promise<number> {
  const client = new CoordinatorClient(base);
  const answers = await Promise.all(tenants.map((tenant) => client.get(`/items/count?tenant=${encodeURIComponent(tenant)}`)));
  const counts: Record<string, number> = {};
  let failed = false;
  answers.forEach((answer, i) => {
    const tenant = tenants[i]!;
    if (answer.status === 200 && typeof answer.body?.count === 'number') {
      counts[tenant] = answer.body.count;
    } else {
      failed = true;
      options.err(`countapp: count of ${JSON.stringify(tenant)}: ${describeError(answer)}\n`);
    }
  });
  if (options.json) options.out(`${JSON.stringify(counts)}\n`);
  else options.out(Object.entries(counts).map(([tenant, n]) => `${tenant}\t${n}\n`).join(''));
  return failed ? EXIT.failed : EXIT.ok;
}
