/**
 * TLS for the NBD server, as nbdkit and qemu-nbd offer it: the NBD_OPT_STARTTLS upgrade,
 * with a psktool key file or a directory of x509 certificates.
 *
 * Contract:
 * - `loadTls({ mode, pskFile, certificatesDir })` checks the options and reads the keys
 *   once, at start: `off` needs nothing; `on` and `require` need exactly one of a PSK file
 *   (psktool's `username:hexkey` lines) or a certificates directory (server-cert.pem and
 *   server-key.pem; ca-cert.pem when present). Anything missing, unreadable or malformed is
 *   an E_INVALID error that names the file and says what to do.
 * - `upgrade(socket, tls)` runs the server side of the TLS handshake over a connection
 *   that has just acknowledged NBD_OPT_STARTTLS and resolves with the encrypted socket;
 *   a failed handshake (wrong key, unknown user, plaintext) rejects with a TlsFailed naming
 *   the cause. Bytes the client sent early are still read by the TLS layer (Node feeds
 *   the wrapped socket's buffered bytes to it).
 * - PSK uses TLS 1.2 PSK cipher suites (OpenSSL's `PSK` set): Node's PSK callback is the
 *   TLS 1.2 mechanism. Certificates use TLS 1.2 or 1.3.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tls from 'tls';
import type { Socket } from 'net';
import { ThinError } from '../errors';

export type TlsMode = 'off' | 'on' | 'require';
export const TLS_MODES: readonly TlsMode[] = ['off', 'on', 'require'];

export interface TlsOptions {
  mode?: TlsMode;
  /** psktool key file: `username:hexkey` per line. */
  pskFile?: string;
  /** Directory with server-cert.pem, server-key.pem and optionally ca-cert.pem. */
  certificatesDir?: string;
}

/** Loaded TLS settings; `undefined` for mode off. */
export interface TlsConfig {
  mode: 'on' | 'require';
  kind: 'psk' | 'x509';
  context: tls.SecureContext;
  /** PSK users and their keys (kind psk). */
  psk?: Map<string, Buffer>;
}

export class TlsFailed extends Error {}

/** Read a psktool key file into user -> key. */
export function readPskFile(file: string): Map<string, Buffer> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new ThinError('E_INVALID', `--tls-psk ${file}: cannot read it (${(e as Error).message}); create one with: psktool -u USER -p ${file}`, { file });
  }
  const keys = new Map<string, Buffer>();
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const colon = line.lastIndexOf(':');
    const user = line.slice(0, colon);
    const hex = line.slice(colon + 1);
    if (colon <= 0 || !/^(?:[0-9a-fA-F]{2})+$/.test(hex)) {
      throw new ThinError('E_INVALID', `--tls-psk ${file}: line ${i + 1} is not "username:hexkey" (the format psktool writes)`, { file, line: i + 1 });
    }
    keys.set(user, Buffer.from(hex, 'hex'));
  });
  if (keys.size === 0) throw new ThinError('E_INVALID', `--tls-psk ${file}: no keys in it; add one with: psktool -u USER -p ${file}`, { file });
  return keys;
}

function readPem(dir: string, name: string, required: boolean): Buffer | undefined {
  const file = path.join(dir, name);
  try {
    return fs.readFileSync(file);
  } catch (e) {
    if (!required && (e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ThinError('E_INVALID', `--tls-certificates ${dir}: cannot read ${name} (${(e as Error).message}); the directory needs server-cert.pem and server-key.pem (and ca-cert.pem), as nbdkit's does`, { file });
  }
}

/** Check the TLS options and load the keys; `undefined` when TLS is off. */
export function loadTls(opts: TlsOptions): TlsConfig | undefined {
  const mode = opts.mode ?? (opts.pskFile || opts.certificatesDir ? 'on' : 'off');
  if (!TLS_MODES.includes(mode)) throw new ThinError('E_INVALID', `--tls ${String(mode)}: use off, on or require`);
  if (mode === 'off') {
    if (opts.pskFile || opts.certificatesDir) throw new ThinError('E_INVALID', '--tls off with --tls-psk or --tls-certificates: drop the key option or use --tls on / require');
    return undefined;
  }
  if (opts.pskFile && opts.certificatesDir) throw new ThinError('E_INVALID', '--tls-psk and --tls-certificates together: choose one');
  if (opts.pskFile) {
    const psk = readPskFile(opts.pskFile);
    let context: tls.SecureContext;
    try {
      context = tls.createSecureContext({ ciphers: 'PSK', maxVersion: 'TLSv1.2', minVersion: 'TLSv1.2' });
    } catch (e) {
      throw new ThinError('E_INVALID', `TLS-PSK is not available in this Node.js build: ${(e as Error).message}`);
    }
    return { mode, kind: 'psk', context, psk };
  }
  if (opts.certificatesDir) {
    const dir = opts.certificatesDir;
    if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new ThinError('E_INVALID', `--tls-certificates ${dir}: not a directory`, { file: dir });
    const cert = readPem(dir, 'server-cert.pem', true)!;
    const key = readPem(dir, 'server-key.pem', true)!;
    const ca = readPem(dir, 'ca-cert.pem', false);
    let context: tls.SecureContext;
    try {
      context = tls.createSecureContext({ cert, key, ca, minVersion: 'TLSv1.2' });
    } catch (e) {
      throw new ThinError('E_INVALID', `--tls-certificates ${dir}: ${(e as Error).message}; check that server-key.pem is the key of server-cert.pem`, { file: dir });
    }
    return { mode, kind: 'x509', context };
  }
  throw new ThinError('E_INVALID', `--tls ${mode} needs keys: --tls-psk FILE (psktool) or --tls-certificates DIR (server-cert.pem, server-key.pem, ca-cert.pem)`);
}

/** Server side of the TLS handshake over `socket`; resolves with the encrypted socket. */
export function upgrade(socket: Socket, cfg: TlsConfig): Promise<tls.TLSSocket> {
  const secure = new tls.TLSSocket(socket, {
    isServer: true,
    secureContext: cfg.context,
    ...(cfg.psk ? { pskCallback: (_s: tls.TLSSocket, identity: string) => cfg.psk!.get(identity) ?? null } : {}),
  } as tls.TLSSocketOptions);
  // Errors after the handshake reach the session through its reader; never unhandled.
  secure.on('error', () => undefined);
  return new Promise((resolve, reject) => {
    const fail = (why: string) => {
      secure.destroy();
      socket.destroy();
      reject(new TlsFailed(why));
    };
    secure.once('secure', () => {
      secure.off('error', onError);
      secure.off('close', onClose);
      resolve(secure);
    });
    const onError = (e: Error) => fail(`TLS handshake failed: ${e.message}`);
    const onClose = () => fail('the client closed the connection during the TLS handshake');
    secure.once('error', onError);
    secure.once('close', onClose);
  });
}
