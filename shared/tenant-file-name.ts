import { createHash } from 'node:crypto';
import path from 'node:path';

const SAFE_BYTE = /^[A-Za-z0-9_-]$/;
// Long enough to read at a glance, short enough that name + ".json.lock" fits any file system's 255-byte limit.
const MAX_READABLE = 120;

/**
 * Tenant → file name inside `database`. Every byte outside [A-Za-z0-9_-] is written as
 * %XX (its UTF-8 value), so no name has a slash, starts with a dot or equals "." or "..":
 * no tenant can reach outside the folder or collide with the `.wal` folder. The mapping
 * is one-to-one; a name that would be too long keeps a readable head and adds `~` and a
 * SHA-256 of the whole tenant (`~` never appears in an encoded name, so no clash).
 */
export function tenantFileName(tenant: string): string {
  let encoded = '';
  for (const byte of Buffer.from(tenant, 'utf8')) {
    const char = String.fromCharCode(byte);
    encoded += SAFE_BYTE.test(char) ? char : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  if (encoded === '') encoded = '%';
  if (encoded.length > MAX_READABLE) {
    let head = encoded.slice(0, MAX_READABLE);
    // Do not cut a %XX escape in half.
    const cut = head.lastIndexOf('%');
    if (cut > MAX_READABLE - 3) head = head.slice(0, cut);
    encoded = `${head}~${createHash('sha256').update(tenant, 'utf8').digest('hex').slice(0, 32)}`;
  }
  return `${encoded}.json`;
}

/** The tenant's file: always directly inside `database`. */
export function tenantFilePath(database: string, tenant: string): string {
  return path.join(database, tenantFileName(tenant));
}
