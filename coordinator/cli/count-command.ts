import { CoordinatorClient, describeError } from './coordinator-client.js';
import { EXIT } from './usage-error.js';

/**
 * `countapp count TENANT...`: each tenant's count, one `TENANT<TAB>COUNT` line each (or one
 * JSON object with `--json`), in the order given (a tenant given twice, once). A tenant the
 * coordinator refuses (an invalid name) is reported on stderr and the others still printed;
 * the exit code is 1 then.
 */
export async function countCommand(base: string, tenants: readonly string[], options: { readonly json: boolean; readonly out: (text: string) => void; readonly err: (text: string) => void }): Promise<number> {
  const client = new CoordinatorClient(base);
  const asked = [...new Set(tenants)];
  const answers = await Promise.all(asked.map((tenant) => client.get(`/items/count?tenant=${encodeURIComponent(tenant)}`)));
  // Pairs, not an object: a tenant is any string, `__proto__` and `10` included, and an
  // object would drop the one (its setter) and move the other (integer keys go first).
  const counts: Array<readonly [string, number]> = [];
  let failed = false;
  answers.forEach((answer, i) => {
    const tenant = asked[i]!;
    if (answer.status === 200 && typeof answer.body?.count === 'number') {
      counts.push([tenant, answer.body.count]);
    } else {
      failed = true;
      options.err(`countapp: count of ${JSON.stringify(tenant)}: ${describeError(answer)}\n`);
    }
  });
  // The JSON text by hand, for the same reasons: every tenant a key, in the order given
  // (JSON.stringify of any object would put "2" and "10" before "zeta").
  if (options.json) options.out(`{${counts.map(([tenant, n]) => `${JSON.stringify(tenant)}:${n}`).join(',')}}\n`);
  else options.out(counts.map(([tenant, n]) => `${tenant}\t${n}\n`).join(''));
  return failed ? EXIT.failed : EXIT.ok;
}
