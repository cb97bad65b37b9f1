/**
 * The deployment artifacts run for real: the image is built from the Dockerfile on a private
 * engine (scripts/docker-env.sh), run read-only against an SDK upstream on the host, stopped
 * with an in-flight call; two containers share sessions through a Redis container; the compose
 * stack serves a tool call through nginx. Everything runs with --network host on loopback.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { createPki } from '../helpers/certs.ts';
import { connectClient, textOf } from '../helpers/client.ts';
import { httpOk, REPO, run, startEngine, waitFor, type Engine } from '../helpers/docker.ts';
import { freePort } from '../helpers/ports.ts';
import { openSession, post, request, rpcOf } from '../helpers/raw.ts';
import { startDemoUpstream, type HttpUpstreamProcess } from '../helpers/upstream.ts';

const engine: Engine = await startEngine();
const IMAGE = `mcp-gateway:test-${process.pid}`;
const SECRET = 'docker-test-secret-0123456789-abcdefghijkl';
const GRACE_MS = 20_000;

/** A temp dir the containers' non-root user can read (mkdtemp makes it 0700). */
function readableDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-docker-test-'));
  chmodSync(dir, 0o755);
  return dir;
}

function writeReadable(file: string, text: string): string {
  writeFileSync(file, text);
  chmodSync(file, 0o644);
  return file;
}

describe('deployment: container image, replicas, compose', { skip: engine.skip ?? false }, () => {
  const containers = new Set<string>();
  const dirs: string[] = [];
  const upstreams: HttpUpstreamProcess[] = [];
  let upstream: HttpUpstreamProcess;

  before(
    async () => {
      const started = Date.now();
      const revision = (await run('git', ['rev-parse', 'HEAD'])).stdout.trim() || 'unknown';
      const build = await engine.docker(
        ['build', '--network', 'host', '-t', IMAGE, '--build-arg', `REVISION=${revision}`, '--build-arg', `CREATED=${new Date().toISOString()}`, '.'],
        600_000,
      );
      assert.equal(build.code, 0, `docker build failed:\n${build.stdout.slice(-4000)}\n${build.stderr}`);
      console.log(`# image built in ${((Date.now() - started) / 1000).toFixed(1)}s`);
      upstream = await startDemoUpstream('host-upstream');
      upstreams.push(upstream);
    },
    { timeout: 600_000 },
  );

  after(
    async () => {
      if (containers.size > 0) await engine.docker(['rm', '-f', '-v', ...containers]);
      for (const u of upstreams) await u.stop();
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
      await engine.stop();
    },
    { timeout: 120_000 },
  );

  /** Runs the image read-only on the host network, loopback only, with a mounted config file. */
  async function runGateway(
    name: string,
    doc: Record<string, unknown>,
    opts: { files?: Record<string, string>; tls?: boolean } = {},
  ): Promise<{ name: string; url: string; metrics: string }> {
    const port = await freePort();
    const metricsPort = await freePort();
    const dir = readableDir();
    dirs.push(dir);
    for (const [file, text] of Object.entries(opts.files ?? {})) writeReadable(join(dir, file), text);
    const listen = { port, ...(doc.listen as object | undefined) };
    writeReadable(join(dir, 'config.yaml'), stringify({ metrics: { port: metricsPort }, session: { secret: SECRET }, ...doc, listen }));
    const container = `${name}-${process.pid}`;
    containers.add(container);
    await engine.must([
      'run', '-d', '--name', container, '--network', 'host', '--read-only', '--tmpfs', '/tmp',
      '-v', `${dir}:/etc/mcp-gateway:ro`, '-e', 'MCPGW_CONFIG=/etc/mcp-gateway/config.yaml',
      // The image listens on 0.0.0.0 (MCPGW_* wins over the file); on the host network keep to loopback.
      '-e', 'MCPGW_LISTEN_HOST=127.0.0.1', '-e', 'MCPGW_METRICS_HOST=127.0.0.1',
      '--health-interval', '1s', IMAGE,
    ]);
    const url = `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`;
    try {
      if (opts.tls) await waitFor(`${container} HEALTHCHECK over TLS`, async () => (await engine.must(['inspect', '-f', '{{.State.Health.Status}}', container])) === 'healthy', 30_000);
      else await waitFor(`${container} /healthz`, () => httpOk(`${url}/healthz`), 30_000);
    } catch (err) {
      const logs = await engine.docker(['logs', container]);
      throw new Error(`${(err as Error).message}\n${logs.stdout}${logs.stderr}`);
    }
    return { name: container, url, metrics: `http://127.0.0.1:${metricsPort}/metrics` };
  }

  it('runs as a numeric non-root user, is labelled, and carries no dev tooling', async () => {
    const [info] = JSON.parse(await engine.must(['image', 'inspect', IMAGE])) as [
      { Size: number; Config: { User: string; Labels: Record<string, string>; Healthcheck: { Test: string[] }; Entrypoint: string[]; Env: string[] } },
    ];
    assert.match(info.Config.User, /^[1-9]\d*:\d+$/, 'USER is numeric and not root');
    for (const label of ['title', 'description', 'version', 'revision', 'created', 'licenses']) {
      assert.ok(info.Config.Labels[`org.opencontainers.image.${label}`], `label org.opencontainers.image.${label}`);
    }
    assert.deepEqual(info.Config.Healthcheck.Test.slice(0, 2), ['CMD', 'node'], 'HEALTHCHECK uses Node, no curl');
    assert.equal(info.Config.Entrypoint[0], '/usr/bin/tini', 'tini is PID 1');
    assert.ok(info.Config.Env.includes('NODE_ENV=production'));

    const box = `inspect-${process.pid}`;
    containers.add(box);
    await engine.must(['create', '--name', box, IMAGE]);
    const listing = await run('bash', ['-o', 'pipefail', '-c', `docker export ${box} | tar -t`], { env: engine.env });
    assert.equal(listing.code, 0, listing.stderr);
    const files = listing.stdout.split('\n').map((f) => f.replace(/^\.\//, ''));
    for (const needed of ['app/dist/cli.js', 'app/dist/demo/server.js', 'app/healthcheck.mjs', 'app/node_modules/fastify/package.json', 'usr/bin/tini', 'usr/local/bin/node']) {
      assert.ok(files.includes(needed), `${needed} is in the image`);
    }
    const forbidden = [
      /^app\/node_modules\/(typescript|@types|eslint|@eslint|typescript-eslint|node|kubernetes-models|dockerfile-utils|@modelcontextprotocol\/conformance)\//,
      /^app\/(src|test|bench|scripts)\//,
      /^app\/dist\/.*\.ts$/,
      /^usr\/bin\/(gcc|g\+\+|cc|c\+\+|make|python3?|tsc)$/,
      /^usr\/lib\/gcc\//,
      /^opt\/yarn/,
    ];
    const found = files.filter((f) => forbidden.some((re) => re.test(f)));
    assert.deepEqual(found.slice(0, 10), [], 'no compiler, TypeScript, @types or dev dependency in the image');
    const mb = info.Size / 1e6;
    console.log(`# image ${IMAGE}: ${mb.toFixed(0)} MB (${files.length} files)`);
    assert.ok(mb < 450, `image is ${mb.toFixed(0)} MB`);
  });

  it('serves a real tools/call read-only, and docker stop drains an in-flight call and exits 0', async () => {
    const gw = await runGateway('gw-readonly', { log: { level: 'info' }, shutdown: { grace: `${GRACE_MS}ms` }, servers: { demo: { upstreams: [{ url: upstream.url }] } } });
    await waitFor('HEALTHCHECK healthy', async () => (await engine.must(['inspect', '-f', '{{.State.Health.Status}}', gw.name])) === 'healthy', 30_000);

    const uid = await engine.must(['exec', gw.name, 'node', '-e', 'process.stdout.write(String(process.getuid()))']);
    assert.equal(uid, '10001');
    const write = await engine.docker(['exec', gw.name, 'node', '-e', "require('fs').writeFileSync('/app/x', 'x')"]);
    assert.notEqual(write.code, 0);
    assert.match(write.stderr, /EROFS|read-only/i, 'the root filesystem is read-only');
    await engine.must(['exec', gw.name, 'node', '-e', "require('fs').writeFileSync('/tmp/x', 'x')"]);

    const { client, close } = await connectClient(`${gw.url}/mcp/demo`);
    try {
      assert.equal(textOf(await client.callTool({ name: 'echo', arguments: { text: 'through the container' } })), 'through the container');
      assert.equal(textOf(await client.callTool({ name: 'whoami', arguments: {} })), 'host-upstream', 'the upstream on the host answered');

      let progressed!: () => void;
      const firstProgress = new Promise<void>((resolve) => (progressed = resolve));
      const inFlight = client.callTool({ name: 'slow_count', arguments: { count: 15, delayMs: 200 } }, undefined, { onprogress: () => progressed(), timeout: 60_000 });
      await firstProgress;
      const stopStarted = Date.now();
      const stop = engine.docker(['stop', '-t', String(GRACE_MS / 1000 + 10), gw.name], 120_000);
      assert.equal(textOf(await inFlight), 'counted to 15', 'the in-flight call finished during the drain');
      assert.equal((await stop).code, 0);
      const stopMs = Date.now() - stopStarted;
      const exitCode = await engine.must(['inspect', '-f', '{{.State.ExitCode}}', gw.name]);
      assert.equal(exitCode, '0', 'exit code 0 after SIGTERM (137 would mean SIGKILL)');
      assert.ok(stopMs < GRACE_MS, `stopped in ${stopMs} ms, within the ${GRACE_MS} ms grace`);
      const logs = await engine.docker(['logs', gw.name]);
      assert.match(logs.stdout, /"signal":"SIGTERM"/);
      console.log(`# docker stop with a call in flight: exit 0 in ${stopMs} ms`);
    } finally {
      await close().catch(() => {});
    }
  });

  it('an HTTPS listener: the image HEALTHCHECK probes it over TLS', async () => {
    const pki = createPki();
    dirs.push(pki.dir);
    const server = pki.issue('gateway', { server: true });
    const gw = await runGateway(
      'gw-tls',
      { listen: { tls: { certFile: '/etc/mcp-gateway/tls.crt', keyFile: '/etc/mcp-gateway/tls.key' } }, servers: { demo: { upstreams: [{ url: upstream.url }] } } },
      { files: { 'tls.crt': server.cert, 'tls.key': server.key }, tls: true },
    );
    assert.equal(await engine.must(['inspect', '-f', '{{.State.Health.Status}}', gw.name]), 'healthy');
  });

  it('two gateway containers and a Redis container: a session from A is served by B', async () => {
    const redisPort = await freePort();
    const redis = `redis-${process.pid}`;
    containers.add(redis);
    await engine.must([
      'run', '-d', '--name', redis, '--network', 'host', '--read-only', '--user', '65534:65534', 'mcpgw-local/redis:bookworm',
      'redis-server', '--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', '/tmp',
    ]);
    await waitFor('redis container', async () => (await engine.docker(['exec', redis, 'redis-cli', '-p', String(redisPort), 'ping'])).stdout.trim() === 'PONG', 20_000);

    const doc = { redis: { url: `redis://127.0.0.1:${redisPort}/0` }, servers: { demo: { upstreams: [{ url: upstream.url }] } } };
    const [a, b] = await Promise.all([runGateway('gw-a', doc), runGateway('gw-b', doc)]);
    await waitFor('both ready (Redis reachable)', async () => (await httpOk(`${a!.url}/readyz`)) && (await httpOk(`${b!.url}/readyz`)), 20_000);

    const sid = await openSession(`${a!.url}/mcp/demo`);
    const headers = { 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' };
    const call = await post(`${b!.url}/mcp/demo`, { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'echo', arguments: { text: 'A to B' } } }, headers);
    assert.equal(call.status, 200, call.text);
    assert.equal(textOf(rpcOf(call).result), 'A to B');

    const del = await request(`${b!.url}/mcp/demo`, 'DELETE', headers);
    assert.equal(del.status, 200, del.text);
    await waitFor('the ended session is 404 on A too', async () => {
      const res = await post(`${a!.url}/mcp/demo`, { jsonrpc: '2.0', id: 3, method: 'tools/list' }, headers);
      return res.status === 404;
    }, 5_000);
  });

  it('compose: config passes; nginx, two gateways, Redis and demo upstreams serve a tool call; then down', async () => {
    const compose = (args: string[], env: NodeJS.ProcessEnv = engine.env) => run('docker-compose', args, { env, timeoutMs: 300_000 });
    // What users run: docker-compose.yml with docker-compose.override.yml (the published ports).
    const plain = await compose(['config', '-q']);
    assert.equal(plain.code, 0, plain.stderr);

    const [nginx, g1, g2, m1, m2, redis, u1, u2] = (await Promise.all(Array.from({ length: 8 }, () => freePort()))) as [number, number, number, number, number, number, number, number];
    const dir = readableDir();
    dirs.push(dir);
    // The users' nginx.conf, pointed at this test's loopback ports.
    const nginxConf = readFileSync(join(REPO, 'deploy/compose/nginx.conf'), 'utf8')
      .replace(/listen 8080;/, `listen 127.0.0.1:${nginx};`)
      .replace(/server gateway-1:8080/, `server 127.0.0.1:${g1}`)
      .replace(/server gateway-2:8080/, `server 127.0.0.1:${g2}`);
    assert.ok(nginxConf.includes(`127.0.0.1:${g2}`) && nginxConf.includes(`listen 127.0.0.1:${nginx}`), 'nginx.conf has the expected listen/server lines');
    writeReadable(join(dir, 'nginx.conf'), nginxConf);
    writeReadable(join(dir, 'session-key'), `${SECRET}\n`);
    writeReadable(join(dir, 'grafana-admin-password'), 'unused-in-this-test\n');

    const fast = { interval: '1s', timeout: '3s', retries: 30 };
    const gateway = (port: number, metrics: number) => ({
      network_mode: 'host',
      environment: {
        MCPGW_LISTEN_HOST: '127.0.0.1',
        MCPGW_LISTEN_PORT: String(port),
        MCPGW_METRICS_HOST: '127.0.0.1',
        MCPGW_METRICS_PORT: String(metrics),
        MCPGW_REDIS_URL: `redis://127.0.0.1:${redis}/0`,
        MCPGW_SERVERS_DEMO_UPSTREAMS: JSON.stringify([{ url: `http://127.0.0.1:${u1}/mcp` }, { url: `http://127.0.0.1:${u2}/mcp` }]),
      },
      healthcheck: { test: ['CMD', 'node', '/app/healthcheck.mjs'], ...fast },
    });
    const demo = (port: number) => ({
      network_mode: 'host',
      command: ['--http', String(port)],
      environment: { DEMO_HOST: '127.0.0.1', DEMO_HTTP_PORT: String(port) },
      healthcheck: { test: ['CMD', 'node', '-e', `fetch('http://127.0.0.1:${port}/mcp').then(r=>process.exit(r.status<500?0:1),()=>process.exit(1))`], ...fast },
    });
    const override = {
      services: {
        nginx: {
          network_mode: 'host',
          volumes: [`${join(dir, 'nginx.conf')}:/etc/nginx/nginx.conf:ro`],
          healthcheck: { test: ['CMD', 'bash', '-c', `exec 3<>/dev/tcp/127.0.0.1/${nginx} && printf 'GET /nginx-health HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q ' 200 ' <&3`], ...fast },
        },
        'gateway-1': gateway(g1, m1),
        'gateway-2': gateway(g2, m2),
        redis: {
          network_mode: 'host',
          command: ['redis-server', '--port', String(redis), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', '/tmp'],
          healthcheck: { test: ['CMD', 'redis-cli', '-p', String(redis), 'ping'], ...fast },
        },
        'upstream-1': demo(u1),
        'upstream-2': demo(u2),
        prometheus: { network_mode: 'host' },
        grafana: { network_mode: 'host' },
      },
      secrets: { session_key: { file: join(dir, 'session-key') }, grafana_admin_password: { file: join(dir, 'grafana-admin-password') } },
    };
    // JSON is YAML too, and quotes every string (compose's YAML 1.1 would read a bare `no` as false).
    const overrideFile = writeReadable(join(dir, 'docker-compose.hostnet.yml'), JSON.stringify(override, null, 2));
    const project = `mcpgwtest${process.pid}`;
    const env = { ...engine.env, MCPGW_IMAGE: IMAGE, REDIS_IMAGE: 'mcpgw-local/redis:bookworm', NGINX_IMAGE: 'mcpgw-local/nginx:bookworm' };
    const files = ['-p', project, '-f', 'docker-compose.yml', '-f', overrideFile];

    const started = Date.now();
    try {
      const up = await compose([...files, 'up', '-d', '--no-build', 'nginx'], env);
      assert.equal(up.code, 0, `compose up failed:\n${up.stderr}`);
      console.log(`# compose up (nginx, 2 gateways, redis, 2 upstreams, all healthy) in ${((Date.now() - started) / 1000).toFixed(1)}s`);
      const running = await engine.must(['ps', '--filter', `label=com.docker.compose.project=${project}`, '--format', '{{.Label "com.docker.compose.service"}}']);
      assert.deepEqual(running.split('\n').sort(), ['gateway-1', 'gateway-2', 'nginx', 'redis', 'upstream-1', 'upstream-2']);

      const { client, close } = await connectClient(`http://127.0.0.1:${nginx}/mcp/demo`);
      try {
        for (let i = 0; i < 6; i++) {
          assert.equal(textOf(await client.callTool({ name: 'echo', arguments: { text: `via nginx ${i}` } })), `via nginx ${i}`);
        }
        assert.match(textOf(await client.callTool({ name: 'whoami', arguments: {} })), /^upstream-[12]$/, 'a demo upstream container answered');
      } finally {
        await close().catch(() => {});
      }
      // Short requests with no stream held open: least_conn takes turns between the gateways.
      for (let i = 0; i < 4; i++) await openSession(`http://127.0.0.1:${nginx}/mcp/demo`);
      // nginx spread the requests over both gateways; each one's metrics listener counted some.
      for (const port of [m1, m2]) {
        const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        const served = text
          .split('\n')
          .filter((l) => l.startsWith('mcp_requests_total{'))
          .reduce((sum, l) => sum + Number(l.split(' ').at(-1)), 0);
        assert.ok(served > 0, `gateway with metrics on ${port} served requests through nginx`);
      }
    } catch (err) {
      const logs = await compose([...files, 'logs', '--no-color', '--tail', '40', 'nginx', 'gateway-1', 'gateway-2'], env);
      throw new Error(`${(err as Error).message}\ncompose logs:\n${logs.stdout}${logs.stderr}`, { cause: err });
    } finally {
      const down = await compose([...files, 'down', '-v', '--remove-orphans', '--timeout', '30'], env);
      assert.equal(down.code, 0, down.stderr);
      const left = await engine.must(['ps', '-a', '-q', '--filter', `label=com.docker.compose.project=${project}`]);
      assert.equal(left, '', 'compose down removed every container');
    }
  });
});
