/**
 * Permissions of what CountApp writes under `database` (and its logs, which hold ids):
 * readable and writable by the user the cluster runs as, nobody else — as PostgreSQL and
 * Redis keep their data. Applied at creation, so the umask can only narrow them further.
 */
export const DATA_DIR_MODE = 0o700;
export const DATA_FILE_MODE = 0o600;
