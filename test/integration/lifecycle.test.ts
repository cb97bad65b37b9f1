import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, describe, it } from 'node:test';
import { demoServerPath } from '../../src/config/load.ts';
import { connectClient, textOf } from '../helpers/client.ts';
import { spawnGateway, startGateway } from '../helpers/gateway.ts';
import { openSession, post, request, rpcOf } from '../helpers/raw.ts';

const stdioDemo = { upstreams: [{ command: process.execPath, args: [demoServerPath()] }] };

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitUntil(cond: () => boolean, ms = 5_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (cond()) return true;
    await sleep(25);
  }
  return cond();
}

/** Child pids the gateway process reports in its log (debug: "stdio upstream started"). */
function spawnedPids(output: string[]): number[] {
  const pids: number[] = [];
  for (const l of output) {
    try {
      const v = JSON.parse(l) as { msg?: string; pid?: number };
      if (v.msg === 'stdio upstream started' && v.pid) pids.push(v.pid);
    } catch {
      // not a log line
    }
  }
  return pids;
}

describe('stdio upstream lifecycle', () => {
  it('caps children at maxProcesses (503), kills one on DELETE, and frees its place', async () => {
    const gw = await startGateway({ servers: { demo: { ...stdioDemo, maxProcesses: 2 } } });
    const pids = new Map<string, number>();
    gw.events.on('spawn', (e) => pids.set(e.session, e.pid!));
    try {
      const url = `${gw.url}/mcp/demo`;
      const s1 = await openSession(url);
      await openSession(url);
      const third = await post(url, { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'x', version: '1' } } });
      assert.equal(third.status, 503, third.text);
      assert.equal(rpcOf(third).error?.data?.code, 'MCPGW_ERR_CAPACITY');
      assert.equal(pids.size, 2);
      const pid1 = pids.values().next().value!;

      const del = await request(url, 'DELETE', { 'mcp-session-id': s1 });
      assert.equal(del.status, 200);
      assert.ok(await waitUntil(() => !alive(pid1)), 'DELETE killed the child');
      assert.equal((await post(url, { jsonrpc: '2.0', id: 3, method: 'ping' }, { 'mcp-session-id': s1 })).status, 404);
      await openSession(url); // its place is free again
    } finally {
      await gw.close();
    }
    for (const pid of pids.values()) assert.equal(alive(pid), false, `pid ${pid} outlived the gateway`);
  });

  it('reaps a child idle past idleTimeout; its session is then 404', async () => {
    const gw = await startGateway({ servers: { demo: { ...stdioDemo, idleTimeout: '1s' } } });
    let pid = 0;
    gw.events.on('spawn', (e) => (pid = e.pid!));
    try {
      const url = `${gw.url}/mcp/demo`;
      const sid = await openSession(url);
      assert.ok(alive(pid));
      assert.ok(await waitUntil(() => !alive(pid), 10_000), 'idle child reaped');
      const res = await post(url, { jsonrpc: '2.0', id: 4, method: 'ping' }, { 'mcp-session-id': sid });
      assert.equal(res.status, 404);
      assert.match(rpcOf(res).error?.message ?? '', /exited/);
    } finally {
      await gw.close();
    }
  });

  it('answers a pending request with a JSON-RPC error when the child dies', async () => {
    const gw = await startGateway({ servers: { demo: stdioDemo } });
    let pid = 0;
    gw.events.on('spawn', (e) => (pid = e.pid!));
    try {
      const { client, close } = await connectClient(`${gw.url}/mcp/demo`);
      const call = client.callTool({ name: 'slow_count', arguments: { count: 50, delayMs: 100 } });
      await sleep(300);
      process.kill(pid, 'SIGKILL');
      await assert.rejects(call, /upstream|could not be reached|exited|Connection closed/i);
      await close().catch(() => {});
    } finally {
      await gw.close();
    }
  });

  it('a session held by another gateway replica answers 404 (stdio children are local)', async () => {
    const doc = { servers: { demo: stdioDemo } };
    const [a, b] = await Promise.all([startGateway(doc), startGateway(doc)]);
    try {
      const sid = await openSession(`${a.url}/mcp/demo`);
      const res = await post(`${b.url}/mcp/demo`, { jsonrpc: '2.0', id: 2, method: 'ping' }, { 'mcp-session-id': sid });
      assert.equal(res.status, 404);
      assert.match(rpcOf(res).error?.message ?? '', /another gateway replica/);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });
});

describe('gateway process signals', () => {
  const stops: (() => Promise<void>)[] = [];
  after(async () => {
    for (const stop of stops) await stop();
  });

  it('SIGTERM drains: an in-flight call finishes, children are killed, exit code 0', async () => {
    const gw = await spawnGateway({ log: { level: 'debug' }, shutdown: { grace: '10s' }, servers: { demo: stdioDemo } });
    stops.push(gw.stop);
    const { client, close } = await connectClient(`${gw.url}/mcp/demo`);
    const progress: number[] = [];
    const call = client.callTool({ name: 'slow_count', arguments: { count: 10, delayMs: 100 } }, undefined, { onprogress: (p) => progress.push(p.progress) });
    await sleep(300);
    const pids = spawnedPids(gw.child.output);
    assert.equal(pids.length, 1);
    gw.child.proc.kill('SIGTERM');
    assert.equal(textOf(await call), 'counted to 10', 'the in-flight call finished during the drain');
    assert.equal(progress.length, 10);
    const { code } = await gw.child.exited();
    assert.equal(code, 0);
    assert.ok(await waitUntil(() => !alive(pids[0]!)), 'stdio child killed');
    await close().catch(() => {});
  });

  it('SIGKILL of the gateway leaves no orphaned stdio children', async () => {
    const gw = await spawnGateway({ log: { level: 'debug' }, servers: { demo: stdioDemo } });
    stops.push(gw.stop);
    await openSession(`${gw.url}/mcp/demo`);
    await openSession(`${gw.url}/mcp/demo`);
    const pids = spawnedPids(gw.child.output);
    assert.equal(pids.length, 2);
    await gw.child.kill('SIGKILL');
    assert.ok(await waitUntil(() => pids.every((p) => !alive(p))), 'children exit when the gateway is gone (stdin closed)');
  });
});
