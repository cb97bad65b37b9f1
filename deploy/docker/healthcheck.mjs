// Docker HEALTHCHECK with Node itself (the image has no curl): GET /healthz on the port the
// gateway really listens on, from the same configuration it loaded (file + MCPGW_* + defaults).
// An HTTPS listener is probed over TLS without checking its certificate (it is this very process);
// one that demands client certificates can only be checked for accepting connections.
import { request } from 'node:https';
import { connect } from 'node:net';
import { loadConfig } from './dist/config/load.js';

const { listen } = loadConfig().config;
const host = listen.host === '0.0.0.0' || listen.host === '' ? '127.0.0.1' : listen.host === '::' ? '::1' : listen.host;
const fail = (why) => {
  process.stderr.write(`healthcheck: ${why}\n`);
  process.exit(1);
};
setTimeout(() => fail('timed out'), 3_000).unref();

if (listen.tls?.requireClientCert) {
  const socket = connect(listen.port, host, () => process.exit(0));
  socket.on('error', (err) => fail(err.code ?? err.message));
} else if (listen.tls) {
  const req = request({ host, port: listen.port, path: '/healthz', rejectUnauthorized: false }, (res) => process.exit(res.statusCode === 200 ? 0 : 1));
  req.on('error', (err) => fail(err.code ?? err.message));
  req.end();
} else {
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${listen.port}/healthz`;
  fetch(url).then(
    (res) => process.exit(res.ok ? 0 : 1),
    (err) => fail(err.cause?.code ?? err.message),
  );
}
