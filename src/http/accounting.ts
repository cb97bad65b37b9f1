import { performance } from 'node:perf_hooks';
import type { Principal } from '../auth/principal.ts';
import type { JsonRpcId } from '../errors.ts';
import { recordRequest, type RequestInfo } from '../ops/requests.ts';
import type { RequestTrace } from '../ops/telemetry.ts';
import type { AnswerSink } from '../protocol/answers.ts';
import { holdsRequest, type Envelope } from '../protocol/jsonrpc.ts';
import type { GatewayContext } from './context.ts';
import type { McpRequest } from './request.ts';

/**
 * One client request from its arrival to its accounting: what the steps learn about it (method,
 * caller, messages), and what the client got. The outcome comes from the answer itself — a
 * JSON-RPC error or an `isError` result in a 200 is an error — as the places that see the answer
 * report it: the gateway's own errors (handle()), a JSON body as it passes (tapJsonAnswer), each
 * event of a relayed stream (the hub), a 2024-11-05 answer fed into the session stream. The
 * request is counted, logged and audited once its response closed and its answer is over: an
 * answer still relayed for a client that left (it may resume) is waited for.
 */
export class Call implements RequestInfo, AnswerSink {
  method: string;
  id: JsonRpcId = null;
  /**
   * Whom per-caller caps count this request against: the principal, or the client's address
   * when auth is off (see Upstream.initialize).
   */
  holder: string;
  tool: string | undefined = undefined;
  principal: string | undefined = undefined;
  /** auth: the checked caller (undefined when auth is off); `principal` holds its id for logs. */
  caller?: Principal;
  /** audit: what the request asked for. */
  messages?: readonly Envelope[];
  session?: string;
  hidden?: readonly string[];
  /** The first failure the client got, as an error_type (src/protocol/answers.ts); undefined while all went well. */
  error: string | undefined = undefined;
  /** traces: the request's server span (src/ops/tracing.ts), ended with its accounting; undefined when tracing is off. */
  readonly trace: RequestTrace | undefined;
  readonly #gw: GatewayContext;
  readonly #request: McpRequest;
  readonly #started: number;
  /** Answers still on their way (see awaitAnswer). */
  #awaited = 0;
  #relayed = false;
  /** The HTTP status sent, once the response closed; -1 before. */
  #status = -1;

  constructor(gw: GatewayContext, request: McpRequest, started: number) {
    this.#gw = gw;
    this.#request = request;
    this.#started = started;
    this.method = request.method === 'POST' ? 'response' : request.method;
    this.holder = `addr:${request.ip}`;
    this.trace = gw.tracing?.request(this, request.headers, request.params.server, request.ip, started);
  }

  failed(type: string): void {
    this.error ??= type;
  }

  /**
   * The response is a stream relayed through the event log. With `answers` (a POST's answers),
   * they are awaited and reported as they pass; without (a standalone GET stream, a 2026-07-28
   * subscriptions/listen: they end when the client leaves), the stream is no answer to judge.
   */
  relayed(answers: boolean): AnswerSink | undefined {
    this.#relayed = true;
    return answers ? this.awaitAnswer() : undefined;
  }

  /**
   * The answer will be reported after the response was handed over (a relayed stream, a
   * 2024-11-05 answer on the session stream): accounting waits for its `settled`.
   */
  awaitAnswer(): AnswerSink {
    this.#awaited++;
    this.#relayed = true;
    return this;
  }

  settled(failure?: string): void {
    if (failure !== undefined) this.failed(failure);
    if (--this.#awaited === 0 && this.#status >= 0) this.#account();
  }

  /**
   * The response closed. A POST whose answer did not reach its end, and that nobody relays
   * further, was given up by the client: a cancellation.
   */
  closed(status: number, complete: boolean): void {
    this.#status = status;
    if (!complete && !this.#relayed && this.error === undefined && this.#request.method === 'POST' && this.messages !== undefined && holdsRequest(this.messages)) this.failed('cancelled');
    if (this.#awaited === 0) this.#account();
  }

  /** Metrics, the request's log line and its audit line. */
  #account(): void {
    // Called from event handlers (a close, the hub's end of a stream): a throw here would end the
    // process or break a stream, so whatever goes wrong is logged.
    try {
      this.#record();
    } catch (err) {
      this.#gw.log.error({ reqId: this.#request.id, err }, 'the request could not be accounted for');
    }
  }

  #record(): void {
    const gw = this.#gw;
    const request = this.#request;
    const status = this.#status;
    // An HTTP error without a JSON-RPC one (an upstream's plain 500, a 405 on DELETE) is an error all the same.
    const error = this.error ?? (status >= 500 ? 'http_5xx' : status >= 400 ? 'http_4xx' : undefined);
    recordRequest(gw.metrics, gw.log, request.id, request.params.server, this, error, status, this.#started);
    // audit: one line per MCP request, after its answer ended (src/ops/audit.ts).
    gw.audit?.record({
      requestId: request.id,
      principal: this.caller,
      server: request.params.server,
      httpMethod: request.method,
      messages: this.messages,
      session: this.session,
      status,
      error,
      hidden: this.hidden,
      latencyMs: performance.now() - this.#started,
    });
    this.trace?.end(status, error);
  }
}
