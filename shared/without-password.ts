/**
 * `text` as a URL with any password replaced by `***`, for logs and status pages (a Redis
 * URL may carry one: `redis://:secret@host`); text that is no URL is returned as it is.
 */
export function withoutPassword(text: string): string {
  try {
    const url = new URL(text);
    if (url.password !== '') url.password = '***';
    return url.toString().replace(/\/$/, '');
  } catch {
    return text;
  }
}
