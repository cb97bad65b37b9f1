import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A PEM certificate and key, with the files they were written to. */
export interface Issued {
  readonly cert: string;
  readonly key: string;
  readonly certFile: string;
  readonly keyFile: string;
}

export interface TestPki {
  readonly dir: string;
  readonly ca: Issued;
  /** A certificate signed by this CA (server certificates get 127.0.0.1 and localhost as names). */
  issue(name: string, opts?: { server?: boolean; subject?: string }): Issued;
}

/** A throw-away CA made with the openssl CLI (P-256 keys, valid one day). */
export function createPki(caName = 'mcp-gateway test CA'): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-pki-'));
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const files = (name: string) => ({ certFile: join(dir, `${name}.crt`), keyFile: join(dir, `${name}.key`) });
  const read = (name: string): Issued => {
    const f = files(name);
    return { ...f, cert: readFileSync(f.certFile, 'utf8'), key: readFileSync(f.keyFile, 'utf8') };
  };
  const ecKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl('req', '-x509', ...ecKey, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', `/CN=${caName}`);
  const ca = read('ca');
  return {
    dir,
    ca,
    issue(name, opts = {}) {
      const ext = join(dir, `${name}.ext`);
      writeFileSync(ext, opts.server ? 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' : 'extendedKeyUsage=clientAuth\n');
      openssl('req', ...ecKey, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', opts.subject ?? `/O=Acme/CN=${name}`);
      openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '1', '-extfile', ext);
      return read(name);
    },
  };
}
