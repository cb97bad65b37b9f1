import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { connect } from 'node:net';
import { freePort } from './ports.ts';
import { spawnChild, type Child } from './process.ts';

export interface RedisServer {
  readonly url: string;
  readonly port: number;
  /** Its working directory: a server started again on it (startRedis(port, dir)) loads what `SHUTDOWN SAVE` left. */
  readonly dir: string;
  readonly child: Child;
  stop(): Promise<void>;
}

/** A real redis-server on a random loopback port, in memory only (unless asked to save); the test stops it. */
export function startRedis(port?: number, dir?: string): Promise<RedisServer> {
  return startRedisWith([], port, dir);
}

/**
 * Stops the server as an operator would for a restart (`SHUTDOWN SAVE`: every connection drops,
 * the data is written to its directory) and starts it again on the same port with that data.
 */
export async function restartRedis(server: RedisServer): Promise<RedisServer> {
  // A connection of its own that never sends the command again (to the new server).
  const c = new Redis(server.port, '127.0.0.1', { maxRetriesPerRequest: 0, retryStrategy: () => null });
  c.on('error', () => {});
  const exited = server.child.exited();
  await c.call('SHUTDOWN', 'SAVE').catch(() => undefined);
  c.disconnect();
  await exited;
  return startRedis(server.port, server.dir);
}

/** Like startRedis, with extra server arguments; retried when another process took the port first. */
async function startRedisWith(extra: string[], port?: number, dir = scratchDir()): Promise<RedisServer> {
  for (let attempt = 0; ; attempt++) {
    const p = port ?? (await freePort());
    const args = ['--port', String(p), '--dir', dir, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no', ...extra];
    const child = spawnChild('redis-server', args);
    try {
      await waitForPort(p, child);
      // Its folder goes with it (a restart, restartRedis, reuses it without stopping first).
      const stop = async () => {
        await child.kill('SIGTERM');
        rmSync(dir, { recursive: true, force: true });
      };
      return { url: `redis://127.0.0.1:${p}`, port: p, dir, child, stop };
    } catch (err) {
      await child.kill('SIGKILL');
      if (attempt >= 3 || port) throw err;
    }
  }
}

/** Starts servers one after another; if one fails, the ones already started are stopped. */
async function all<T extends { stop(): Promise<void> }>(starts: (() => Promise<T>)[]): Promise<T[]> {
  const started: T[] = [];
  try {
    for (const start of starts) started.push(await start());
    return started;
  } catch (err) {
    await Promise.all(started.map((s) => s.stop()));
    throw err;
  }
}

/**
 * Waits until *this* child serves the port: another process (a parallel test) may have taken the
 * port between choosing it and binding, and answering there would be someone else's server.
 */
async function waitForPort(port: number, child: Child): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.proc.exitCode !== null) throw new Error(`redis-server exited: ${child.output.join('\n')}`);
    const served = await new Promise<string>((resolve) => {
      const s = connect(port, '127.0.0.1');
      let text = '';
      s.setEncoding('utf8');
      s.once('connect', () => s.write('INFO server\r\n'));
      s.on('data', (chunk: string) => {
        text += chunk;
        if (/process_id:\d+/.test(text)) s.end();
      });
      s.once('close', () => resolve(text));
      s.once('error', () => resolve(''));
      s.setTimeout(1_000, () => s.destroy());
    });
    const pid = /process_id:(\d+)/.exec(served)?.[1];
    if (pid !== undefined) {
      if (Number(pid) === child.pid) return;
      throw new Error(`port ${port} is served by another redis-server (pid ${pid})`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('redis-server did not start');
}

export interface SentinelSet {
  readonly master: RedisServer;
  readonly replica: RedisServer;
  readonly sentinel: Child;
  readonly sentinelPort: number;
  readonly name: string;
  /** Asks the sentinel to fail over now; resolves when the replica has become master. */
  failover(): Promise<void>;
  stop(): Promise<void>;
}

/** A master, one replica and one sentinel (quorum 1), all on loopback. */
export async function startSentinelSet(name = 'mymaster'): Promise<SentinelSet> {
  const master = await startRedis();
  let replica: RedisServer | undefined;
  let sentinel: Child | undefined;
  try {
    replica = await startRedisWith(['--replicaof', '127.0.0.1', String(master.port)]);
    return await withSentinel(name, master, replica, (s) => (sentinel = s));
  } catch (err) {
    await Promise.all([sentinel?.kill('SIGKILL'), replica?.stop(), master.stop()]);
    throw err;
  }
}

async function withSentinel(name: string, master: RedisServer, replica: RedisServer, started: (s: Child) => void): Promise<SentinelSet> {
  await waitFor(async () => (await info(replica.port, 'replication')).includes('master_link_status:up'));
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-sentinel-'));
  const sentinelPort = await freePort();
  const conf = join(dir, 'sentinel.conf');
  writeFileSync(
    conf,
    [
      `port ${sentinelPort}`,
      'bind 127.0.0.1',
      `dir ${dir}`,
      `sentinel monitor ${name} 127.0.0.1 ${master.port} 1`,
      `sentinel down-after-milliseconds ${name} 1000`,
      `sentinel failover-timeout ${name} 5000`,
      '',
    ].join('\n'),
  );
  const sentinel = spawnChild('redis-server', [conf, '--sentinel']);
  started(sentinel);
  await waitForPort(sentinelPort, sentinel);
  await waitFor(async () => (await info(sentinelPort, 'sentinel')).includes('status=ok'));
  return {
    master,
    replica,
    sentinel,
    sentinelPort,
    name,
    async failover() {
      const s = new Redis(sentinelPort, '127.0.0.1');
      const promoted = async () => (await info(replica.port, 'replication')).includes('role:master');
      try {
        // The sentinel picks only a replica it has heard from lately; on a loaded machine it may
        // not have yet (NOGOODSLAVE), or give the failover up: ask again until the replica leads.
        for (let attempt = 0; ; attempt++) {
          await s.call('SENTINEL', 'FAILOVER', name).catch(() => undefined);
          try {
            await waitFor(promoted, 8_000);
            break;
          } catch (err) {
            if (attempt === 3) throw err;
          }
        }
      } finally {
        s.disconnect();
      }
      // Sentinel demotes the old master in its own time (seconds); do it now, as it would, so
      // the new master has a replica to acknowledge writes again.
      const old = new Redis(master.port, '127.0.0.1');
      try {
        await old.call('REPLICAOF', '127.0.0.1', String(replica.port));
      } finally {
        old.disconnect();
      }
      await waitFor(async () => (await info(master.port, 'replication')).includes('master_link_status:up'), 15_000);
    },
    async stop() {
      await sentinel.kill('SIGTERM');
      await Promise.all([replica.stop(), master.stop()]);
    },
  };
}

export interface RedisCluster {
  readonly nodes: RedisServer[];
  stop(): Promise<void>;
}

/** Three masters sharing the 16384 slots, no replicas: a real Redis Cluster on loopback. */
export async function startCluster(): Promise<RedisCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-cluster-'));
  const nodes = await all([0, 1, 2].map((i) => () => startRedisWith(['--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${i}.conf`), '--cluster-node-timeout', '2000'])));
  const conns = nodes.map((n) => new Redis(n.port, '127.0.0.1'));
  try {
    const ranges = [
      [0, 5460],
      [5461, 10922],
      [10923, 16383],
    ];
    await Promise.all(conns.map((c, i) => c.call('CLUSTER', 'ADDSLOTSRANGE', String(ranges[i]![0]), String(ranges[i]![1]))));
    for (const n of nodes.slice(1)) await conns[0]!.call('CLUSTER', 'MEET', '127.0.0.1', String(n.port));
    await waitFor(async () => {
      const states = await Promise.all(conns.map((c) => c.call('CLUSTER', 'INFO') as Promise<string>));
      return states.every((s) => s.includes('cluster_state:ok') && s.includes('cluster_known_nodes:3'));
    }, 20_000);
  } catch (err) {
    await Promise.all(nodes.map((n) => n.stop()));
    throw err;
  } finally {
    for (const c of conns) c.disconnect();
  }
  return { nodes, stop: async () => void (await Promise.all(nodes.map((n) => n.stop()))) };
}

/** Where a test Redis may write (replication snapshots), never the working directory. */
function scratchDir(): string {
  return mkdtempSync(join(tmpdir(), 'mcpgw-redis-'));
}


async function info(port: number, section: string): Promise<string> {
  const c = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0 });
  try {
    await c.connect();
    return (await c.info(section)) as string;
  } catch {
    return '';
  } finally {
    c.disconnect();
  }
}

async function waitFor(cond: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('condition not met in time');
}
