import type { RedisClient } from '../redis.ts';
import type { RateCheck, RateLimiter, RateVerdict } from './limiter.ts';

/**
 * GCRA over every bucket of a request in one script, on Redis's clock (replicas' clocks may
 * disagree; Redis's is one). KEYS are the buckets; ARGV holds, per bucket, the emission
 * interval, the period (the burst tolerance) and the cost, all in milliseconds. Returns
 * {0, 0} when every bucket admits the request (all are then charged), else {index, retry-after}.
 * Arrival times are stored with three decimals: an interval like 60000/7 ms is not whole.
 */
const SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local next = {}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[3 * i - 2])
  local period = tonumber(ARGV[3 * i - 1])
  local cost = tonumber(ARGV[3 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  local n = tat + interval * cost
  local over = n - now - period
  if over > 0 then return {i, tostring(over)} end
  next[i] = n
end
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], string.format('%.3f', next[i]), 'PX', math.max(1, math.ceil(next[i] - now)))
end
return {0, '0'}
`;

type Scripted = RedisClient & { mcpgwGcra(numKeys: number, ...args: (string | number)[]): Promise<[number, string]> };

export class RedisRateLimiter implements RateLimiter {
  readonly #redis: Scripted;
  /** Decides while Redis cannot: limits then hold per replica, not across them. */
  readonly #fallback: RateLimiter;
  readonly #onError: (err: Error) => void;

  constructor(redis: RedisClient, fallback: RateLimiter, onError: (err: Error) => void) {
    redis.defineCommand('mcpgwGcra', { lua: SCRIPT });
    this.#redis = redis as Scripted;
    this.#fallback = fallback;
    this.#onError = onError;
  }

  async take(checks: readonly RateCheck[]): Promise<RateVerdict> {
    const args: (string | number)[] = [];
    for (const c of checks) args.push(c.key);
    for (const c of checks) args.push(c.rule.periodMs / c.rule.requests, c.rule.periodMs, c.cost);
    let answer: [number, string];
    try {
      answer = await this.#redis.mcpgwGcra(checks.length, ...args);
    } catch (err) {
      this.#onError(err as Error);
      return this.#fallback.take(checks);
    }
    const [index, over] = answer;
    if (index === 0) return { ok: true };
    return { ok: false, scope: checks[index - 1]!.scope, retryAfterMs: Number(over) };
  }
}
