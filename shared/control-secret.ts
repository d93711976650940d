/**
 * The header a control call (a worker's `/kill`) carries the cluster secret in. The
 * coordinator hands each worker the secret over the IPC channel at spawn: argv and the
 * environment are readable by other local processes.
 */
export const SECRET_HEADER = 'x-countapp-secret';
