import { describe, expect, it } from 'vitest';
import { describePersistence } from '../../worker/store/redis-persistence.js';
import { tenantKey } from '../../worker/store/redis.js';

describe('tenantKey', () => {
  it('is the tenant inside a hash tag, with %, { and } percent-encoded', () => {
    expect(tenantKey('t1')).toBe('countapp:{t1}');
    expect(tenantKey('{a}')).toBe('countapp:{%7Ba%7D}');
    expect(tenantKey('%7Ba%7D')).toBe('countapp:{%257Ba%257D}');
    expect(tenantKey('ü/..')).toBe('countapp:{ü/..}');
  });

  it('gives different tenants different keys, and the hash tag is exactly the encoded tenant', () => {
    const tenants = ['{', '}', '%', '%7B', '%7D', '%25', '{}', '}{', 'a{b}c', 'a%7Bb%7Dc', ' ', '..'];
    const keys = tenants.map(tenantKey);
    expect(new Set(keys).size).toBe(tenants.length);
    for (const key of keys) {
      // Redis hashes what lies between the first `{` and the first `}` after it.
      const open = key.indexOf('{');
      const close = key.indexOf('}', open + 1);
      expect(close).toBe(key.length - 1);
    }
  });
});

describe('describePersistence', () => {
  const settings = (appendonly: string, appendfsync: string, mixed: string[] = []) => ({ appendonly, appendfsync, mixed });

  it('no append-only file: an error saying acknowledged items are not durable', () => {
    const verdict = describePersistence(settings('no', 'everysec'), 'fsync');
    expect(verdict.level).toBe('error');
    expect(verdict.message).toMatch(/NOT durable.*appendonly yes/);
  });

  it('appendfsync no: a warning', () => {
    expect(describePersistence(settings('yes', 'no'), 'fsync')).toMatchObject({ level: 'warn' });
  });

  it('everysec and always are enough; everysec says what a power cut can cost', () => {
    expect(describePersistence(settings('yes', 'everysec'), 'fsync')).toMatchObject({ level: 'ok', message: expect.stringMatching(/power cut .* last second/) });
    expect(describePersistence(settings('yes', 'always'), 'fsync')).toMatchObject({ level: 'ok' });
  });

  it('settings it could not read: a warning naming what to set', () => {
    const verdict = describePersistence({ appendonly: 'unknown', appendfsync: 'unknown', mixed: [], unknownBecause: 'ERR unknown command' }, 'fsync');
    expect(verdict.level).toBe('warn');
    expect(verdict.message).toMatch(/ERR unknown command.*appendonly yes and appendfsync everysec or always/);
  });

  it('a Cluster whose nodes differ names them', () => {
    expect(describePersistence(settings('no', 'everysec', ['10.0.0.2:7001']), 'fsync').message).toMatch(/10\.0\.0\.2:7001 differ/);
  });
});
