import { Buffer } from 'node:buffer';

/**
 * Bytes a Unix socket's path may have: sun_path holds 108 on Linux and 104 on macOS and the BSDs,
 * its terminating NUL included. libuv cuts a longer path short without a word, so the socket file
 * gets another name: a clean stop leaves that file behind, and the next start finds it in use.
 * Windows names pipes, not files, and has no such limit.
 */
export const MAX_SOCKET_PATH_BYTES: number | undefined = process.platform === 'win32' ? undefined : (process.platform === 'linux' ? 108 : 104) - 1;

/** Why `path` is too long for a Unix socket (in UTF-8 bytes, as the OS counts), or undefined. */
export function socketPathTooLong(path: string): string | undefined {
  const bytes = Buffer.byteLength(path);
  if (MAX_SOCKET_PATH_BYTES === undefined || bytes <= MAX_SOCKET_PATH_BYTES) return undefined;
  return `is ${bytes} bytes long; a Unix socket path may have at most ${MAX_SOCKET_PATH_BYTES} bytes on this system`;
}
