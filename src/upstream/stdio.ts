import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import type { ServerConfig, StdioUpstreamConfig } from '../config/types.ts';
import { GatewayError } from '../errors.ts';
import { holdsRequest } from '../protocol/jsonrpc.ts';
import type { SessionClaims } from '../session/token.ts';
import type { UpstreamEvents } from './events.ts';
import { MessageFramer, oldestIdle, singleMessages } from './framing.ts';
import { HolderCounts } from './holders.ts';
import { anyAvailable, pickLeastLoaded, ReplicaState } from './replica.ts';
import type { ClientRequest, ReplicaSnapshot, SessionPlacement, Upstream, UpstreamHealth, UpstreamResponse } from './types.ts';
import { traced, type ExchangeTracer } from './tracing.ts';

/** Environment a child inherits from the gateway; everything else (secrets!) stays out. */
const INHERITED_ENV = ['PATH', 'HOME', 'USER', 'LOGNAME', 'LANG', 'LC_ALL', 'TZ', 'TMPDIR', 'SHELL', 'SYSTEMROOT'];
const KILL_GRACE_MS = 2_000;

/** One gateway session served by one child process speaking MCP over stdin/stdout. */
class StdioSession {
  readonly id: string;
  readonly child: ChildProcessWithoutNullStreams;
  readonly replica: ReplicaState;
  /** Frames the child's messages as Streamable HTTP answers (shared with 2024-11-05 SSE upstreams). */
  readonly framer = new MessageFramer();
  /** The caller it was spawned for (see Upstream.initialize). */
  readonly holder: string;
  #partial = '';
  exited = false;
  /** Its place among its holder's was given back (StdioUpstream.#release). */
  released = false;
  killReason: string | undefined;

  constructor(id: string, child: ChildProcessWithoutNullStreams, replica: ReplicaState, holder: string) {
    this.id = id;
    this.holder = holder;
    this.child = child;
    this.replica = replica;
  }

  /** Splits stdout into newline-delimited messages. */
  lines(chunk: string): string[] {
    const text = this.#partial + chunk;
    const parts = text.split('\n');
    this.#partial = parts.pop() ?? '';
    return parts;
  }

  /** One message the gateway wrote (src/protocol/wire.ts: one line, no line break inside). */
  write(line: string): void {
    if (!this.exited) this.child.stdin.write(line + '\n');
  }
}

/**
 * A server whose replicas are child processes: one child per session, spawned on initialize,
 * killed on DELETE, idle expiry, gateway shutdown or when the cap is reached. Here the gateway
 * itself is the Streamable HTTP server: it frames the child's messages as JSON or SSE responses.
 * A child lives on the gateway replica that spawned it (`node` in the session id).
 */
export class StdioUpstream implements Upstream {
  readonly kind = 'stdio' as const;
  readonly #server: ServerConfig;
  readonly #specs: StdioUpstreamConfig[];
  readonly #replicas: ReplicaState[];
  readonly #events: UpstreamEvents;
  readonly #node: string;
  readonly #sessions = new Map<string, StdioSession>();
  /** Children per holder, for `maxSessionsPerCaller`. */
  readonly #held = new HolderCounts();
  /** Children not being ended: what `maxProcesses` counts. */
  #live = 0;
  readonly #sweeper: NodeJS.Timeout;
  #closing = false;
  /** traces: undefined when tracing is off. */
  readonly #tracer: ExchangeTracer | undefined;

  constructor(server: ServerConfig, events: UpstreamEvents, node: string, tracer?: ExchangeTracer) {
    this.#server = server;
    this.#events = events;
    this.#node = node;
    this.#tracer = tracer;
    this.#specs = server.upstreams as StdioUpstreamConfig[];
    this.#replicas = this.#specs.map((spec) => new ReplicaState(spec.name, server.maxFails, server.failTimeoutMs));
    const every = Math.max(250, Math.min(30_000, Math.floor(server.idleTimeoutMs / 4)));
    this.#sweeper = setInterval(() => this.#reapIdle(), every);
    this.#sweeper.unref();
  }

  get sessionCount(): number {
    return this.#sessions.size;
  }

  async initialize(req: ClientRequest, sessionId: string, holder: string): Promise<{ response: UpstreamResponse; placement: SessionPlacement }> {
    if (this.#closing) throw new GatewayError('MCPGW_ERR_SHUTTING_DOWN');
    // Every check and the spawn that takes the slot run without an await between them.
    if (this.#sessions.has(sessionId)) throw new GatewayError('MCPGW_ERR_ALREADY_INITIALIZED', 'this session already has its process');
    if (this.#held.of(holder) >= this.#server.maxSessionsPerCaller) {
      // Clients often leave a session without DELETE (the SDK's close() sends none): the caller's
      // own least recently used idle child makes room. Busy ones are never ended for it.
      const idle = oldestIdle(this.#sessions.values(), holder);
      if (!idle) throw new GatewayError('MCPGW_ERR_CALLER_CAPACITY', `server "${this.#server.name}": ${this.#server.maxSessionsPerCaller} busy processes (maxSessionsPerCaller)`);
      this.#kill(idle, 'replaced by a newer session of the same caller (maxSessionsPerCaller)');
    }
    // Children being ended (within KILL_GRACE_MS) no longer count.
    if (this.#live >= this.#server.maxProcesses) {
      throw new GatewayError('MCPGW_ERR_CAPACITY', `server "${this.#server.name}" has ${this.#server.maxProcesses} processes (maxProcesses)`);
    }
    const replica = pickLeastLoaded(this.#replicas, Date.now());
    if (!replica) throw new GatewayError('MCPGW_ERR_NO_HEALTHY_UPSTREAM', `server "${this.#server.name}"`);
    const session = this.#spawn(sessionId, replica, holder);
    // A child that does not answer its initialize in requestTimeout is ended: it would hold one of
    // the maxProcesses slots with nobody to use it.
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.#kill(session, 'no answer to initialize');
        reject(new GatewayError('MCPGW_ERR_UPSTREAM_TIMEOUT', `server "${this.#server.name}": the process did not answer initialize within requestTimeout`));
      }, this.#server.requestTimeoutMs);
    });
    try {
      const response = await Promise.race([this.#request(session, req), late]);
      return { response, placement: { upstream: replica.key, upstreamSession: '', node: this.#node } };
    } finally {
      clearTimeout(timer);
    }
  }

  async post(claims: SessionClaims, req: ClientRequest): Promise<UpstreamResponse> {
    const session = this.#session(claims);
    session.framer.lastActivity = Date.now();
    if (holdsRequest(req.messages)) return this.#request(session, req);
    const span = this.#tracer?.exchange(this.#server.name, session.replica.key, 'stdio', '', req.messages, req.resendCount);
    for (const line of singleMessages(req, span?.context)) session.write(line);
    span?.end();
    return { status: 202, headers: {}, body: null };
  }

  async get(claims: SessionClaims): Promise<UpstreamResponse> {
    const session = this.#session(claims);
    const res = session.framer.openGet();
    if (res.status === 200 && res.body !== null && typeof res.body !== 'string') {
      session.replica.streams++;
      res.body.once('close', () => session.replica.streams--);
    }
    return res;
  }

  async delete(claims: SessionClaims): Promise<UpstreamResponse> {
    const session = this.#session(claims);
    this.#kill(session, 'session deleted');
    return { status: 200, headers: {}, body: null };
  }

  /** Ends a session's child, e.g. when the gateway session expired. */
  end(sessionId: string, reason: string): void {
    const session = this.#sessions.get(sessionId);
    if (session) this.#kill(session, reason);
  }

  health(): UpstreamHealth {
    if (this.#closing || !anyAvailable(this.#replicas)) return 'no_healthy_upstream';
    // Children being ended (within KILL_GRACE_MS) no longer count.
    return this.#live < this.#server.maxProcesses ? 'up' : 'at_capacity';
  }

  replicaStates(): readonly ReplicaSnapshot[] {
    return this.#replicas.map((r) => r.snapshot());
  }

  async close(): Promise<void> {
    this.#closing = true;
    clearInterval(this.#sweeper);
    const exits = [...this.#sessions.values()].map(
      (s) =>
        new Promise<void>((resolve) => {
          if (s.exited) return resolve();
          s.child.once('exit', () => resolve());
          this.#kill(s, 'gateway shutting down');
        }),
    );
    await Promise.all(exits);
  }

  #session(claims: SessionClaims): StdioSession {
    const session = claims.node === this.#node ? this.#sessions.get(claims.id) : undefined;
    if (!session) {
      const where = claims.node === this.#node ? 'its process has exited' : 'its process lives on another gateway replica';
      throw new GatewayError('MCPGW_ERR_SESSION_NOT_FOUND', where);
    }
    return session;
  }

  #spawn(sessionId: string, replica: ReplicaState, holder: string): StdioSession {
    const spec = this.#specs[this.#replicas.indexOf(replica)]!;
    const env: Record<string, string> = {};
    for (const k of INHERITED_ENV) if (process.env[k] !== undefined) env[k] = process.env[k]!;
    Object.assign(env, spec.env);
    const child = spawn(spec.command, [...spec.args], { cwd: spec.cwd, env, stdio: ['pipe', 'pipe', 'pipe'] });
    const session = new StdioSession(sessionId, child, replica, holder);
    this.#sessions.set(sessionId, session);
    this.#held.add(holder);
    this.#live++;
    replica.streams++;
    const where = { server: this.#server.name, replica: replica.key, pid: child.pid };
    this.#events.emit('spawn', { ...where, session: sessionId });

    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      for (const line of session.lines(chunk)) if (line.trim()) this.#fromChild(session, line);
    });
    let errPartial = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      const parts = (errPartial + chunk).split('\n');
      errPartial = parts.pop() ?? '';
      for (const line of parts) if (line) this.#events.emit('stderr', { ...where, line });
    });
    // EPIPE after the child died is reported by 'exit'; nothing more to do here.
    child.stdin.on('error', () => {});
    let exitReason = 'process exited';
    child.once('error', (err: NodeJS.ErrnoException) => {
      exitReason = `cannot start ${spec.command}: ${err.code ?? err.message}`;
      replica.fail(Date.now());
    });
    child.once('close', (code, signal) => {
      session.exited = true;
      replica.streams--;
      if (this.#sessions.get(sessionId) === session) this.#sessions.delete(sessionId);
      this.#release(session);
      const reason = session.killReason ?? exitReason;
      this.#events.emit('exit', { ...where, session: sessionId, code, signal, reason });
      session.framer.close(new GatewayError('MCPGW_ERR_UPSTREAM_UNAVAILABLE', `server "${this.#server.name}": ${reason}`));
    });
    return session;
  }

  #request(session: StdioSession, req: ClientRequest): Promise<UpstreamResponse> {
    // traces: a child has no headers; the exchange's context goes in each message's _meta.
    const span = this.#tracer?.exchange(this.#server.name, session.replica.key, 'stdio', '', req.messages, req.resendCount);
    const answer = session.framer.request(
      req,
      async () => {
        for (const line of singleMessages(req, span?.context)) session.write(line);
      },
      (err) => new GatewayError('MCPGW_ERR_UPSTREAM_UNAVAILABLE', `server "${this.#server.name}": ${(err as Error).message}`),
    );
    return span ? traced(span, answer) : answer;
  }

  #fromChild(session: StdioSession, line: string): void {
    if (!session.framer.receive(line)) {
      this.#events.emit('protocolError', { server: this.#server.name, replica: session.replica.key, detail: `not JSON on stdout: ${line.slice(0, 200)}` });
    }
  }

  /**
   * Gives the session's place among its holder's back, once: when it is ended (a child being
   * killed is gone within KILL_GRACE_MS, and a client that closed and reopens must not wait for
   * that) or when it exited by itself.
   */
  #release(session: StdioSession): void {
    if (session.released) return;
    session.released = true;
    this.#live--;
    this.#held.remove(session.holder);
  }

  #kill(session: StdioSession, reason: string): void {
    this.#release(session);
    if (session.exited) return;
    session.killReason = reason;
    session.child.stdin.end();
    session.child.kill('SIGTERM');
    const force = setTimeout(() => {
      if (!session.exited) session.child.kill('SIGKILL');
    }, KILL_GRACE_MS);
    force.unref();
  }

  #reapIdle(): void {
    const cutoff = Date.now() - this.#server.idleTimeoutMs;
    for (const s of this.#sessions.values()) {
      if (s.framer.idle && s.framer.lastActivity < cutoff) this.#kill(s, 'idle timeout');
    }
  }
}

