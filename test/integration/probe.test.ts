import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { spawnGateway, type GatewayProcess } from '../helpers/gateway.ts';
import { openSession } from '../helpers/raw.ts';
import { startDemoUpstream, type HttpUpstreamProcess } from '../helpers/upstream.ts';

describe('active upstream probes', () => {
  let upstream: HttpUpstreamProcess;
  let gw: GatewayProcess;
  before(async () => {
    upstream = await startDemoUpstream('probed');
    gw = await spawnGateway({ servers: { demo: { upstreams: [{ url: upstream.url }], probe: { interval: '50ms', timeout: '1s' } } } });
  });
  after(async () => {
    await gw?.stop();
    await upstream?.stop();
  });

  it('probing a live upstream many times leaves the gateway running and ready', async () => {
    // Each probe drops the answer's body unread; that must never surface as an unhandled error.
    await sleep(1_500);
    assert.equal(gw.child.proc.exitCode, null, `the gateway process is alive:\n${gw.child.output.slice(-20).join('\n')}`);
    assert.equal((await fetch(`${gw.url}/readyz`)).status, 200);
    await openSession(`${gw.url}/mcp/demo`);
  });
});
