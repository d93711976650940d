/** A command line that does not make sense: `countapp: <message>` and exit 2, with a pointer to --help. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** Exit codes of the commands. */
export const EXIT = {
  ok: 0,
  /** It failed: unreachable coordinator, refused items, a bad file. */
  failed: 1,
  /** The command line is wrong. */
  usage: 2,
  /** `status`: the coordinator answered but is not ready. */
  notReady: 3,
} as const;
