import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { STATUS_CODES, type ServerOptions } from 'node:http';
import type { Duplex } from 'node:stream';
import type { GatewayConfig } from '../config/types.ts';
import { errorBody, GatewayError } from '../errors.ts';
import type { GatewayContext } from './context.ts';
import { registerLegacyRoutes } from './legacy-sse.ts';
import { registerMcpRoutes, sendError } from './mcp.ts';
import { serverStatus } from '../ops/health.ts';
import { registerMetadataRoutes } from './oauth-metadata.ts';

/** Fastify error codes the framework raises before our handlers run, mapped onto our table. */
const FASTIFY_ERRORS: Record<string, GatewayError['code']> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'MCPGW_ERR_BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'MCPGW_ERR_UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_TYPE: 'MCPGW_ERR_UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'MCPGW_ERR_PARSE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'MCPGW_ERR_INVALID_REQUEST',
  FST_ERR_BAD_URL: 'MCPGW_ERR_NOT_FOUND',
};

/** A request id a caller may choose: what tracing systems use (UUIDs, trace ids), up to 128 characters. */
const REQUEST_ID = /^[A-Za-z0-9._:/+=@-]{1,128}$/;

/** Errors Node's HTTP server reports before a route runs, mapped onto our table (else MALFORMED_HTTP). */
const CLIENT_ERRORS: Record<string, GatewayError['code']> = {
  HPE_HEADER_OVERFLOW: 'MCPGW_ERR_HEADERS_TOO_LARGE',
  // Node's name for both a head past headersTimeout and a request past requestTimeout.
  ERR_HTTP_REQUEST_TIMEOUT: 'MCPGW_ERR_REQUEST_TIMEOUT',
};

/**
 * How long a client may take over a request, for Node's HTTP server (every listener). Node checks
 * the head and request deadlines on a timer of its own, every 30 s by default: far coarser than a
 * 10 s head limit, so the timer runs at a quarter of the shortest limit (at most once a second).
 * Node applies these only while a request is still arriving: a response being streamed (SSE) is
 * past them, and lives as long as its stream.
 */
export function serverLimits(listen: GatewayConfig['listen']): Pick<ServerOptions, 'headersTimeout' | 'requestTimeout' | 'keepAliveTimeout' | 'connectionsCheckingInterval'> {
  return {
    headersTimeout: listen.headersTimeoutMs,
    requestTimeout: listen.requestTimeoutMs,
    keepAliveTimeout: listen.keepAliveTimeoutMs,
    connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(listen.headersTimeoutMs / 4))),
  };
}

/** `?verbose`, `?verbose=1` or `?verbose=true` (not `0` or `false`). */
function isVerbose(query: unknown): boolean {
  const v = (query as Record<string, unknown> | undefined)?.verbose;
  return typeof v === 'string' && v !== '0' && v !== 'false';
}

export function buildApp(gw: GatewayContext, logger: Logger): FastifyInstance {
  const { tls } = gw.config.listen;
  const limits = serverLimits(gw.config.listen);
  let nextRequestId = 0;
  const app = Fastify({
    // auth: an HTTPS listener; with a client CA, clients are asked for a certificate (mTLS). A
    // connection that never finishes its handshake is held no longer than one that never sends a head.
    ...(tls
      ? { https: { cert: tls.cert, key: tls.key, ca: tls.clientCa, requestCert: tls.clientCa !== undefined, rejectUnauthorized: tls.requireClientCert, handshakeTimeout: limits.headersTimeout, ...limits } }
      : { http: limits }),
    loggerInstance: logger as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'reqId' }),
    // The caller's X-Request-Id becomes the request id of every log and audit line only when it
    // looks like one: else a caller would choose how long those lines get, or pose as another request.
    requestIdHeader: false,
    genReqId: (req) => {
      const id = req.headers['x-request-id'];
      return typeof id === 'string' && REQUEST_ID.test(id) ? id : `req-${(nextRequestId++).toString(36)}`;
    },
    // No child logger per request (an allocation and a serialization on every call): the few
    // lines written per request carry reqId, principal, server and method themselves.
    childLoggerFactory: (parent) => parent,
    trustProxy: typeof gw.config.listen.trustProxy === 'object' ? [...gw.config.listen.trustProxy] : gw.config.listen.trustProxy,
    bodyLimit: gw.config.listen.bodyLimit,
    // Draining is Gateway.shutdown's: what arrives on a connection still open is served (with
    // `Connection: close`), never given Fastify's own 503 body, which is not JSON-RPC.
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    // Fastify sets these on the server after creating it: they must say the same as `limits`.
    requestTimeout: limits.requestTimeout,
    keepAliveTimeout: limits.keepAliveTimeout,
    // Requests Node's HTTP server refuses (before any route runs, or while a body is still
    // arriving) get our table too.
    clientErrorHandler: (err: NodeJS.ErrnoException, socket: Duplex) => {
      if (err.code === 'ECONNRESET' || socket.destroyed) return;
      const e = new GatewayError(CLIENT_ERRORS[err.code ?? ''] ?? 'MCPGW_ERR_MALFORMED_HTTP');
      const body = errorBody(e);
      // As Node does: an answer goes out only when none has started on this connection, else
      // its bytes would land in the middle of that one.
      const inFlight = (socket as Duplex & { _httpMessage?: { headersSent: boolean } | null })._httpMessage;
      if (socket.writable && !inFlight?.headersSent) {
        socket.write(`HTTP/1.1 ${e.status} ${STATUS_CODES[e.status] ?? ''}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
      }
      socket.destroy();
    },
    // A URL the router cannot read (bad percent-encoding, a path segment too long to be a server
    // name) gets a JSON-RPC error like any other, not Fastify's own body.
    frameworkErrors: (err, _request, reply) => {
      const detail = err.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'a path segment longer than any server name' : 'a path that is not a valid URL';
      sendError(reply as FastifyReply, new GatewayError('MCPGW_ERR_NOT_FOUND', detail), null);
    },
  }) as unknown as FastifyInstance;

  // Bodies stay raw bytes: parsed once to route, forwarded untouched.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(['application/json'], { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

  app.setErrorHandler((err: FastifyError, request, reply) => {
    if (err.code === 'ECONNRESET' && request.raw.destroyed) {
      // The client left while its body was being read: nobody to answer, nothing went wrong here.
      request.log.debug({ reqId: request.id }, 'client left before its request body was read');
      reply.raw.destroy();
      return;
    }
    const code = err instanceof GatewayError ? err.code : FASTIFY_ERRORS[err.code];
    if (!code) request.log.error({ reqId: request.id, url: request.url.split('?')[0], err }, 'unhandled error');
    sendError(reply, err instanceof GatewayError ? err : new GatewayError(code ?? 'MCPGW_ERR_INTERNAL'), null);
  });
  app.setNotFoundHandler((request, reply) => {
    sendError(reply, new GatewayError('MCPGW_ERR_NOT_FOUND', `${request.method} ${request.url.split('?')[0]}`), null);
  });

  app.get('/healthz', (_request, reply) => {
    reply.header('content-type', 'application/json').send('{"status":"ok"}');
  });
  // Readiness of this replica (GatewayContext.notReady); `?verbose` adds each server's health,
  // which never changes the status code.
  const ready = (request: FastifyRequest, reply: FastifyReply) => {
    const reasons = gw.notReady();
    const body: Record<string, unknown> = reasons.length ? { status: 'unavailable', reasons } : { status: 'ready' };
    if (isVerbose(request.query)) body.servers = Object.fromEntries([...gw.servers].map(([name, upstream]) => [name, serverStatus(upstream)]));
    reply
      .code(reasons.length ? 503 : 200)
      .header('content-type', 'application/json')
      .send(JSON.stringify(body));
  };
  app.get('/readyz', ready);
  app.get('/health', ready);

  // The server named in the path is looked up before anything is built from it (an auth
  // challenge, a log, audit or metric field): an unknown name, whatever it holds, is refused
  // here, before its body is read. Every route with a `:server` passes this hook.
  app.addHook('onRequest', (request, reply, done) => {
    // Draining (Gateway.shutdown): this connection ends with this response, whichever route answers it.
    if (gw.shuttingDown) reply.raw.setHeader('connection', 'close');
    const { server } = request.params as { server?: string };
    if (server === undefined || gw.servers.has(server)) return done();
    // Counted as handle() counts a request it refuses, under no label the caller chose.
    const method = request.method === 'POST' ? 'response' : request.method === 'GET' || request.method === 'DELETE' ? request.method : 'other';
    const err = new GatewayError('MCPGW_ERR_UNKNOWN_SERVER');
    sendError(reply, err, null);
    gw.metrics.request(method, err.code, err.status, reply.elapsedTime / 1000);
  });

  registerMetadataRoutes(app, gw);
  registerMcpRoutes(app, gw);
  // legacy: the 2024-11-05 HTTP+SSE transport at /mcp/<server>/sse and /mcp/<server>/messages.
  registerLegacyRoutes(app, gw);
  return app;
}
