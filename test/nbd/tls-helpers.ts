/**
 * Key material for the TLS suites, made with the real tools: psktool key files and a
 * certtool CA with a server certificate for localhost / 127.0.0.1 (nbdkit's layout:
 * ca-cert.pem, server-cert.pem, server-key.pem). Also the raw client's STARTTLS upgrade.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { runOk, Wire } from './helpers';

/** psktool -u USER -p FILE; returns FILE. */
export async function pskFile(file: string, user: string): Promise<string> {
  await runOk('psktool', ['-u', user, '-p', file]);
  return file;
}

/**
 * A CA and a server certificate signed by it, in `dir` (server side: ca-cert.pem,
 * server-cert.pem, server-key.pem) and `dir`/client (ca-cert.pem only, what a client
 * verifying the server needs).
 */
export async function certificates(dir: string, cn = 'thinsim test CA'): Promise<{ server: string; client: string }> {
  fs.mkdirSync(dir, { recursive: true });
  const f = (n: string) => path.join(dir, n);
  fs.writeFileSync(f('ca.info'), `cn = ${cn}\nca\ncert_signing_key\nexpiration_days = 2\n`);
  fs.writeFileSync(f('server.info'), 'organization = thinsim\ncn = localhost\ndns_name = localhost\nip_address = 127.0.0.1\ntls_www_server\nencryption_key\nsigning_key\nexpiration_days = 2\n');
  await runOk('certtool', ['--generate-privkey', '--key-type=ecdsa', '--outfile', f('ca-key.pem')]);
  await runOk('certtool', ['--generate-self-signed', '--load-privkey', f('ca-key.pem'), '--template', f('ca.info'), '--outfile', f('ca-cert.pem')]);
  await runOk('certtool', ['--generate-privkey', '--key-type=ecdsa', '--outfile', f('server-key.pem')]);
  await runOk('certtool', ['--generate-certificate', '--load-ca-certificate', f('ca-cert.pem'), '--load-ca-privkey', f('ca-key.pem'),
    '--load-privkey', f('server-key.pem'), '--template', f('server.info'), '--outfile', f('server-cert.pem')]);
  const client = path.join(dir, 'client');
  fs.mkdirSync(client, { recursive: true });
  fs.copyFileSync(f('ca-cert.pem'), path.join(client, 'ca-cert.pem'));
  return { server: dir, client };
}

/** Upgrade a raw test connection after STARTTLS's ACK, with a PSK; resolves with a Wire over TLS. */
export function clientTls(w: Wire, user: string, key: Buffer): Promise<Wire> {
  return new Promise((resolve, reject) => {
    w.sock.removeAllListeners('data');
    const s = tls.connect({
      socket: w.sock, ciphers: 'PSK', maxVersion: 'TLSv1.2', checkServerIdentity: () => undefined,
      pskCallback: () => ({ identity: user, psk: key }),
    });
    s.once('secureConnect', () => resolve(new Wire(s)));
    s.once('error', reject);
  });
}
