// Docker HEALTHCHECK with Node itself (the image has no curl): GET /healthz on the port the
// gateway really listens on, from the same configuration it loaded (file + MCPGW_* + defaults).
import { loadConfig } from './dist/config/load.js';

const { listen } = loadConfig().config;
const host = listen.host === '0.0.0.0' || listen.host === '' ? '127.0.0.1' : listen.host === '::' ? '[::1]' : listen.host.includes(':') ? `[${listen.host}]` : listen.host;
try {
  const res = await fetch(`http://${host}:${listen.port}/healthz`, { signal: AbortSignal.timeout(2_000) });
  process.exit(res.ok ? 0 : 1);
} catch (err) {
  process.stderr.write(`healthcheck: ${err.cause?.code ?? err.message}\n`);
  process.exit(1);
}
