import { existsSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { ReadStream } from 'node:tty';
import { parseArgs } from 'node:util';
import { ConfigError } from '../config/load.js';
import { formatPasswordFile, hashPassword, parsePasswordFile, PasswordFileError } from '../auth/password-file.js';
import { promptHidden } from './hidden-prompt.js';

export const PASSWD_USAGE = `usage: midge passwd FILE USER [PASSWORD]     add USER or change its password
       midge passwd --delete FILE USER        remove USER
Without PASSWORD, it is typed twice at a terminal (not shown), or read from the first line of stdin.`;

/** `midge passwd`: edits a Mosquitto-format password file, writing $7$ (PBKDF2-SHA512) hashes. */
export async function passwd(argv: string[]): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, strict: true, options: { delete: { type: 'boolean', short: 'D' }, help: { type: 'boolean' } } });
  } catch (err) {
    throw new ConfigError(`passwd: ${(err as Error).message.split('\n')[0]}`);
  }
  if (parsed.values.help) {
    console.log(PASSWD_USAGE);
    return;
  }
  const [file, user, given] = parsed.positionals;
  if (file === undefined || user === undefined || parsed.positionals.length > 3) throw new ConfigError(PASSWD_USAGE.split('\n')[0] as string);
  if (user.includes(':') || user.length === 0) throw new ConfigError(`passwd: a user name may not be empty or contain ":"`);
  const read = readUsers(file);
  const users = read ?? new Map<string, string>();
  if (parsed.values.delete) {
    if (read === undefined) throw new ConfigError(`passwd: ${file} does not exist`);
    if (!users.delete(user)) throw new ConfigError(`passwd: no user "${user}" in ${file}`);
  } else {
    const password = given ?? (process.stdin.isTTY ? await typedPassword() : await pipedPassword());
    if (password === undefined) {
      // given up with Ctrl-C: the file stays as it was, and the exit code is a SIGINT's
      process.exitCode = 130;
      return;
    }
    if (password.length === 0) throw new ConfigError('passwd: the password is empty');
    users.set(user, hashPassword(password));
  }
  writeUsers(file, users);
}

/** The users of `file`, undefined when there is no such file yet; one that cannot be read or used is a one-line mistake. */
function readUsers(file: string): Map<string, string> | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    throw new ConfigError(`passwd: cannot read ${file}: ${code ?? (err as Error).message}`);
  }
  try {
    return parsePasswordFile(text, file);
  } catch (err) {
    if (err instanceof PasswordFileError) throw new ConfigError(`passwd: ${err.message}`);
    throw err;
  }
}

/** Written whole to a temporary file, then renamed: a crash never leaves half a file, nor a failure a stray one. */
function writeUsers(file: string, users: Map<string, string>): void {
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    writeFileSync(tmp, formatPasswordFile(users), { mode: 0o600 });
    renameSync(tmp, file);
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {
      // never written
    }
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' && !existsSync(dirname(file)) ? `no directory ${dirname(file)}` : code ?? (err as Error).message;
    throw new ConfigError(`passwd: cannot write ${file}: ${why}`);
  }
}

/** Typed twice at the terminal, as mosquitto_passwd asks for it, and not shown; undefined on Ctrl-C. */
async function typedPassword(): Promise<string | undefined> {
  const typed = await promptHidden(['Password: ', 'Reenter password: '], process.stdin as ReadStream, process.stderr);
  if (typed === undefined) return undefined;
  if (typed[0] !== typed[1]) throw new ConfigError('passwd: the passwords do not match');
  return typed[0];
}

/** The first line of stdin (a pipe or a file). */
async function pipedPassword(): Promise<string> {
  let text = '';
  for await (const chunk of process.stdin) {
    text += (chunk as Buffer).toString('utf8');
    if (text.includes('\n')) break;
  }
  return text.split(/\r?\n/)[0] ?? '';
}
