import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { LoggingMessageNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { after, before, describe, it } from 'node:test';
import { demoServerPath } from '../../src/config/load.ts';
import type { Gateway } from '../../src/gateway.ts';
import { connectClient, textOf } from '../helpers/client.ts';
import { startGateway } from '../helpers/gateway.ts';
import { startDemoUpstream, type HttpUpstreamProcess } from '../helpers/upstream.ts';

/** Every message kind a session carries, through the gateway, with a real SDK client. */
async function exerciseDemo(url: string): Promise<void> {
  const { client, close } = await connectClient(url, { name: 'Grace' });
  try {
    const tools = await client.listTools();
    assert.deepEqual(tools.tools.map((t) => t.name).sort(), ['add', 'announce', 'ask_name', 'echo', 'slow_count', 'stats', 'whoami']);
    assert.equal(textOf(await client.callTool({ name: 'echo', arguments: { text: 'hello' } })), 'hello');
    assert.equal(textOf(await client.callTool({ name: 'add', arguments: { a: 2, b: 40 } })), '42');

    const progress: number[] = [];
    const counted = await client.callTool({ name: 'slow_count', arguments: { count: 5, delayMs: 10 } }, undefined, {
      onprogress: (p) => progress.push(p.progress),
    });
    assert.equal(textOf(counted), 'counted to 5');
    assert.deepEqual(progress, [1, 2, 3, 4, 5]);

    // A server→client request (elicitation) answered by the client, mid tool call.
    assert.equal(textOf(await client.callTool({ name: 'ask_name', arguments: {} })), 'Hello, Grace!');

    const resources = await client.listResources();
    assert.deepEqual(resources.resources.map((r) => r.uri), ['demo://readme']);
    const readme = await client.readResource({ uri: 'demo://readme' });
    assert.match((readme.contents[0] as { text: string }).text, /demo upstream/);

    // A message outside any request arrives on the standalone GET stream.
    const logged: unknown[] = [];
    client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => void logged.push(n.params.data));
    assert.equal(textOf(await client.callTool({ name: 'announce', arguments: { text: 'news' } })), 'announced');
    for (let i = 0; i < 100 && logged.length === 0; i++) await sleep(20);
    assert.deepEqual(logged, ['news']);

    // Cancellation reaches the upstream: the tool stops and counts it.
    const abort = new AbortController();
    const seen: number[] = [];
    const cancelled = client.callTool({ name: 'slow_count', arguments: { count: 100, delayMs: 20 } }, undefined, {
      signal: abort.signal,
      onprogress: (p) => {
        seen.push(p.progress);
        if (seen.length === 3) abort.abort('enough');
      },
    });
    await assert.rejects(cancelled);
    let stats = { cancelled: 0 };
    for (let i = 0; i < 100 && stats.cancelled === 0; i++) {
      await sleep(20);
      stats = JSON.parse(textOf(await client.callTool({ name: 'stats', arguments: {} }))) as typeof stats;
    }
    assert.ok(stats.cancelled >= 1, 'the upstream saw notifications/cancelled');

    const prompt = await client.getPrompt({ name: 'greet', arguments: { name: 'Ada' } });
    assert.match(JSON.stringify(prompt.messages), /greet Ada/);
    await client.ping();
  } finally {
    await close();
  }
}

describe('spine: SDK client through the gateway', () => {
  describe('two Streamable HTTP upstream replicas', () => {
    let a: HttpUpstreamProcess;
    let b: HttpUpstreamProcess;
    let gw: Gateway;
    before(async () => {
      [a, b] = await Promise.all([startDemoUpstream('a'), startDemoUpstream('b')]);
      gw = await startGateway({ servers: { everything: { upstreams: [{ url: a.url }, { url: b.url }] } } });
    });
    after(async () => {
      await gw?.close();
      await Promise.all([a?.stop(), b?.stop()]);
    });

    it('carries requests, progress, elicitation, resources and prompts', async () => {
      await exerciseDemo(`${gw.url}/mcp/everything`);
    });

    it('spreads new sessions over both replicas (least connections)', async () => {
      const sessions = await Promise.all([0, 1, 2, 3].map(() => connectClient(`${gw.url}/mcp/everything`)));
      try {
        const names = await Promise.all(sessions.map(async (s) => textOf(await s.client.callTool({ name: 'whoami', arguments: {} }))));
        assert.deepEqual(new Set(names), new Set(['a', 'b']));
      } finally {
        await Promise.all(sessions.map((s) => s.close()));
      }
    });
  });

  describe('the stdio demo server', () => {
    let gw: Gateway;
    before(async () => {
      gw = await startGateway({ servers: { demo: { upstreams: [{ command: process.execPath, args: [demoServerPath()] }] } } });
    });
    after(async () => {
      await gw?.close();
    });

    it('carries requests, progress, elicitation, resources and prompts', async () => {
      await exerciseDemo(`${gw.url}/mcp/demo`);
    });
  });
});
