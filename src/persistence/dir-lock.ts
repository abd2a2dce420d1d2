import { createHash } from 'node:crypto';
import { mkdirSync, realpathSync, statSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import process from 'node:process';
import { StoreError } from './store.js';

/** A data dir held by this process until `release()` (or until the process ends, however it ends). */
export interface DataDirLock {
  /** where the lock is held: an abstract Unix socket (Linux), a named pipe (Windows) or a socket file */
  readonly address: string;
  release(): Promise<void>;
}

/**
 * How the lock is held. `abstract`: a Unix socket in Linux's abstract namespace, which the kernel
 * frees the moment its process dies, so a killed broker leaves nothing stale behind. `pipe`: a
 * Windows named pipe, freed the same way. `file`: a socket file in the data dir elsewhere; one its
 * process left behind refuses connections and is replaced.
 */
export type LockKind = 'abstract' | 'pipe' | 'file';

const DEFAULT_KIND: LockKind = process.platform === 'linux' ? 'abstract' : process.platform === 'win32' ? 'pipe' : 'file';
/** how long a holder has to say its pid */
const ASK_MS = 2000;
/** sun_path holds 104 bytes on macOS and the BSDs, 108 on Linux */
const MAX_SOCKET_PATH = 100;

/**
 * Takes the data dir `dir` for this broker (creating the dir if need be) before its store is
 * opened; a StoreError "data dir X is in use by another broker (pid N)" when a broker holds it,
 * whether in another process or in this one. The dir is known by its device and inode, so another
 * path to it (a symlink, a bind mount) is the same dir. The lock keeps no process alive.
 */
export async function lockDataDir(dir: string, kind: LockKind = DEFAULT_KIND): Promise<DataDirLock> {
  let id: string;
  let real: string;
  try {
    mkdirSync(dir, { recursive: true });
    const st = statSync(dir, { bigint: true });
    if (!st.isDirectory()) throw new Error('not a directory');
    real = realpathSync(dir);
    id = createHash('sha256').update(`${st.dev}:${st.ino}`).digest('hex').slice(0, 32);
  } catch (err) {
    throw new StoreError(`cannot open the data dir ${dir}: ${(err as Error).message}`);
  }
  const address = addressOf(kind, id, real);
  for (let attempt = 0; ; attempt++) {
    const asking = new Set<Socket>();
    const server = createServer((socket) => tellPid(socket, asking));
    server.on('error', () => undefined);
    server.unref();
    try {
      await listen(server, address);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EADDRINUSE' || attempt >= 5) {
        throw new StoreError(code === 'EADDRINUSE' ? `data dir ${dir} is in use by another broker` : `cannot lock the data dir ${dir} (${address}): ${code ?? (err as Error).message}`);
      }
      const holder = await askPid(address);
      if (holder === 'gone') {
        // the holder died (a socket file is left behind by it; the kernel's names are gone already)
        if (kind === 'file') removeStale(address);
        continue;
      }
      throw new StoreError(`data dir ${dir} is in use by another broker${holder === undefined ? '' : ` (pid ${holder})`}`);
    }
    return { address, release: () => close(server, asking) };
  }
}

function addressOf(kind: LockKind, id: string, real: string): string {
  if (kind === 'abstract') return `\0midge-lock-${id}`;
  if (kind === 'pipe') return `\\\\?\\pipe\\midge-lock-${id}`;
  const inDir = join(real, 'midge.lock');
  // a socket's path has a small limit; a dir too deep for it is locked under the temp dir instead
  return Buffer.byteLength(inDir) <= MAX_SOCKET_PATH ? inDir : join(tmpdir(), `midge-lock-${id}.sock`);
}

/** Whoever connects to the lock is told the holder's pid. */
function tellPid(socket: Socket, asking: Set<Socket>): void {
  asking.add(socket);
  socket.on('close', () => asking.delete(socket));
  socket.on('error', () => undefined);
  socket.setTimeout(ASK_MS, () => socket.destroy());
  socket.unref();
  socket.end(`${process.pid}\n`);
}

function listen(server: Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    // exclusive: a cluster worker's listen would otherwise share its primary's handle
    server.listen({ path, exclusive: true }, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** The pid of the lock's holder; undefined when it holds the lock but says nothing; 'gone' when nobody holds it. */
function askPid(path: string): Promise<number | undefined | 'gone'> {
  return new Promise((resolve) => {
    const socket = createConnection({ path });
    let text = '';
    let connected = false;
    const done = (answer: number | undefined | 'gone'): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(answer);
    };
    // no answer in time: something holds the name, and it is not taken from it
    const timer = setTimeout(() => done(undefined), ASK_MS);
    socket.on('connect', () => (connected = true));
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    socket.on('end', () => done(/^\d+\n$/.test(text) ? Number(text.trim()) : undefined));
    // ECONNREFUSED: a socket file no process listens on; ENOENT: it went meanwhile
    socket.on('error', (err: NodeJS.ErrnoException) => done(connected ? undefined : err.code === 'ECONNREFUSED' || err.code === 'ENOENT' ? 'gone' : undefined));
  });
}

function removeStale(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new StoreError(`cannot remove the stale lock ${path}: ${(err as Error).message}`);
  }
}

/** Frees the name; the close waits for no connection (nothing else keeps the process alive then). */
function close(server: Server, asking: Set<Socket>): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) {
      resolve();
      return;
    }
    server.close(() => resolve());
    for (const socket of asking) socket.destroy();
  });
}
