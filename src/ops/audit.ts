import { pino } from 'pino';
import type { AuditConfig } from '../config/types.ts';
import type { Principal } from '../auth/principal.ts';
import type { Envelope } from '../protocol/jsonrpc.ts';
import { clip } from './requests.ts';

/** What the HTTP layer knows of one finished MCP request. */
export interface AuditRecord {
  readonly requestId: string;
  readonly principal: Principal | undefined;
  readonly server: string;
  /** HTTP method for GET/DELETE; the JSON-RPC messages of a POST. */
  readonly httpMethod: string;
  readonly messages: readonly Envelope[] | undefined;
  /** Gateway session id (not the token the client holds). */
  readonly session: string | undefined;
  /** The HTTP status sent. */
  readonly status: number;
  /**
   * What went wrong as the client saw it, when it did: an error_type of mcp_errors_total (a
   * gateway code, `rpc_<name>`, `tool_error`, `cancelled`, `http_4xx`/`http_5xx`).
   */
  readonly error: string | undefined;
  /** Names the caller asked for but may not use. */
  readonly hidden: readonly string[] | undefined;
  readonly latencyMs: number;
}

type Destination = { write(line: string): unknown; flushSync?(): void; end?(): void };

/**
 * The audit log: one JSON line per MCP request (per message of a batch) — who, which server,
 * what, with which parameters (configured keys redacted at any depth), how it ended and how long
 * it took — written to its own destination, never mixed with the operational log.
 */
export class AuditLog {
  readonly #dest: Destination;
  /** Closed: a request that ends later is not written (its line would throw). */
  #ended = false;
  readonly #redact: ReadonlySet<string>;
  readonly #maxParams: number;

  constructor(cfg: AuditConfig, destination?: Destination) {
    this.#redact = new Set(cfg.redactKeys.map(normalizeKey));
    this.#maxParams = cfg.maxParamsBytes;
    this.#dest = destination ?? openDestination(cfg.destination);
  }

  record(r: AuditRecord): void {
    if (this.#ended) return;
    const time = new Date().toISOString();
    const base = {
      time,
      requestId: r.requestId,
      // The kind keeps a user and a client (or a certificate) of one name apart; the id is what
      // the operational log names the caller by.
      principal: r.principal ? { id: r.principal.id, kind: r.principal.kind, issuer: r.principal.issuer, subject: r.principal.subject } : null,
      server: r.server,
      session: r.session ?? null,
    };
    // As the client saw it: a 200 carrying a JSON-RPC error or a failed tool is an error too.
    const outcome = r.status === 401 || r.status === 403 || (r.hidden && r.hidden.length > 0) ? 'denied' : r.error === undefined && r.status < 400 ? 'ok' : 'error';
    const tail = { outcome, status: r.status, error: r.error ?? null, latencyMs: Math.round(r.latencyMs * 1000) / 1000 };
    const messages = r.messages && r.messages.length > 0 ? r.messages : undefined;
    if (!messages) {
      this.#dest.write(JSON.stringify({ ...base, method: r.httpMethod, name: null, params: null, ...tail }) + '\n');
      return;
    }
    let lines = '';
    for (const m of messages) {
      const name = itemName(m);
      const hidden = name !== null && r.hidden?.includes(name);
      // Method and name are cut like params are: a caller must not decide how large a line gets.
      lines += JSON.stringify({ ...base, method: clip(m.method ?? 'response'), name: name === null ? null : clip(name), params: this.#params(m.params), ...tail, ...(hidden ? { outcome: 'denied' } : {}) }) + '\n';
    }
    this.#dest.write(lines);
  }

  flush(): void {
    this.#dest.flushSync?.();
  }

  /** Lines of requests that end after this (cut at the end of a drain) are written before the file closes. */
  close(): void {
    // The responses cut last close on the next turns of the event loop: their lines come first.
    setImmediate(() =>
      setImmediate(() => {
        this.#ended = true;
        this.#dest.end?.();
      }),
    );
  }

  #params(params: Record<string, unknown> | undefined): unknown {
    if (params === undefined) return null;
    const redacted = redact(params, this.#redact);
    const size = Buffer.byteLength(JSON.stringify(redacted));
    return size > this.#maxParams ? `[truncated: ${size} bytes]` : redacted;
  }
}

/** `api_key`, `apiKey`, `API-KEY` are one key to the redactor. */
function normalizeKey(k: string): string {
  return k.toLowerCase().replace(/[-_]/g, '');
}

/** Deeper than this, a value is not written out (the front door refuses deeper bodies anyway). */
const REDACT_DEPTH = 128;

function redact(value: unknown, keys: ReadonlySet<string>, depth = 0): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (depth >= REDACT_DEPTH) return '[too deep]';
  if (Array.isArray(value)) return value.map((v) => redact(v, keys, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = keys.has(normalizeKey(k)) ? '[redacted]' : redact(v, keys, depth + 1);
  return out;
}

function itemName(m: Envelope): string | null {
  const p = m.params;
  if (!p) return null;
  switch (m.method) {
    case 'tools/call':
    case 'prompts/get':
      return typeof p.name === 'string' ? p.name : null;
    case 'resources/read':
    case 'resources/subscribe':
    case 'resources/unsubscribe':
      return typeof p.uri === 'string' ? p.uri : null;
    case 'completion/complete': {
      const ref = p.ref as { name?: unknown; uri?: unknown } | undefined;
      return typeof ref?.name === 'string' ? ref.name : typeof ref?.uri === 'string' ? ref.uri : null;
    }
    default:
      return null;
  }
}

function openDestination(destination: string): Destination {
  if (destination === 'stdout') return pino.destination({ dest: 1, sync: false });
  if (destination === 'stderr') return pino.destination({ dest: 2, sync: false });
  return pino.destination({ dest: destination, sync: false, mkdir: true, append: true });
}
