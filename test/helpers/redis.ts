import { connect } from 'node:net';
import { freePort } from './ports.ts';
import { spawnChild, type Child } from './process.ts';

export interface RedisServer {
  readonly url: string;
  readonly port: number;
  readonly child: Child;
  stop(): Promise<void>;
}

/** A real redis-server on a random loopback port, in memory only; the test stops it. */
export async function startRedis(port?: number): Promise<RedisServer> {
  for (let attempt = 0; ; attempt++) {
    const p = port ?? (await freePort());
    const child = spawnChild('redis-server', ['--port', String(p), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no']);
    try {
      await waitForPort(p, child);
      return { url: `redis://127.0.0.1:${p}`, port: p, child, stop: () => child.kill('SIGTERM') };
    } catch (err) {
      await child.kill('SIGKILL');
      if (attempt >= 3 || port) throw err;
    }
  }
}

async function waitForPort(port: number, child: Child): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.proc.exitCode !== null) throw new Error(`redis-server exited: ${child.output.join('\n')}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.end();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('redis-server did not start');
}
