import type { AccessRule, ItemRules, ServerPolicy } from '../config/types.ts';
import { uriReadings } from '../upstream/rewrite.ts';
import type { Principal } from './principal.ts';

/** The scopes of `rule` the caller lacks, in the order configured. */
export function missingScopes(rule: AccessRule, principal: Principal): string[] {
  return rule.scopes.filter((s) => !principal.scopes.has(s));
}

/** Every claim the rule names has one of its values (an array claim: contains one of them). */
export function claimsMatch(rule: AccessRule, principal: Principal): boolean {
  for (const name in rule.claims) {
    const wanted = rule.claims[name]!;
    const value = principal.claims[name];
    if (Array.isArray(value) ? !value.some((v) => wanted.includes(String(v))) : value === undefined || value === null || !wanted.includes(String(value))) return false;
  }
  return true;
}

export function permits(rule: AccessRule, principal: Principal): boolean {
  return missingScopes(rule, principal).length === 0 && claimsMatch(rule, principal);
}

export type ItemKind = 'tools' | 'resources' | 'prompts';

function ruleFor(rules: ItemRules, name: string): AccessRule | undefined {
  const exact = rules.exact.get(name);
  if (exact) return exact;
  for (const p of rules.patterns) if (p.pattern.test(name)) return p.rule;
  return undefined;
}

function allowed(policy: ServerPolicy, kind: ItemKind, name: string, principal: Principal): boolean {
  const rule = ruleFor(policy[kind], name);
  return rule ? permits(rule, principal) : policy.unlisted === 'allow';
}

/**
 * May the caller see and use this tool / resource / prompt? Unnamed items follow `unlisted`. A
 * resource URI must pass as written and as a URL parser reads it (`DEMO://x`, ` demo://x`,
 * `file:///a/../b` are the URIs an SDK server looks up as `demo://x` and `file:///b`), its percent
 * escapes decoded too (`file:///%73ecret` is `file:///secret` to a server that serves paths).
 */
export function mayUse(policy: ServerPolicy, kind: ItemKind, name: string, principal: Principal): boolean {
  if (!allowed(policy, kind, name, principal)) return false;
  if (kind !== 'resources') return true;
  return uriReadings(name).every((u) => allowed(policy, kind, u, principal));
}
