/**
 * Dockerfile lint: the `dockerfile-utils` validator (the linter of the VS Code Docker tooling; no
 * hadolint binary can be had here) with every optional rule as an error, then the project's own
 * rules for the image: base, stages, user, healthcheck, signals, labels, apt hygiene.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { validate, ValidationSeverity, type ValidatorSettings } from 'dockerfile-utils';
import { REPO } from '../helpers/docker.ts';

const DOCKERFILE = readFileSync(join(REPO, 'Dockerfile'), 'utf8');
const STRICT: ValidatorSettings = {
  deprecatedMaintainer: ValidationSeverity.ERROR,
  directiveCasing: ValidationSeverity.ERROR,
  emptyContinuationLine: ValidationSeverity.ERROR,
  instructionCasing: ValidationSeverity.ERROR,
  instructionCmdMultiple: ValidationSeverity.ERROR,
  instructionEntrypointMultiple: ValidationSeverity.ERROR,
  instructionHealthcheckMultiple: ValidationSeverity.ERROR,
  instructionJSONInSingleQuotes: ValidationSeverity.ERROR,
  instructionWorkdirRelative: ValidationSeverity.ERROR,
};

/** Instructions with continuation lines joined: [keyword, arguments]. */
function instructions(text: string): [string, string][] {
  return text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const [kw, ...rest] = l.split(/\s+/);
      return [kw!.toUpperCase(), rest.join(' ')];
    });
}

describe('Dockerfile lint', () => {
  it('passes the dockerfile-utils validator with every rule an error', () => {
    const problems = validate(DOCKERFILE, STRICT).map((d) => `line ${d.range.start.line + 1}: ${String(d.message)}`);
    assert.deepEqual(problems, []);
  });

  it('the validator catches a broken Dockerfile (it really runs)', () => {
    const found = validate('from node:24\nHEALTHCHECK --interval=xs CMD true\nCOPY a\nUSER\n', STRICT).map((d) => String(d.message));
    for (const re of [/uppercase/, /invalid duration/, /COPY requires at least two/, /no arguments/]) assert.ok(found.some((m) => re.test(m)), `${re} in ${found.join('; ')}`);
  });

  it('follows the image rules: base, stages, numeric user, healthcheck, PID 1, labels, apt hygiene', () => {
    const ins = instructions(DOCKERFILE);
    const froms = ins.filter(([k]) => k === 'FROM').map(([, a]) => a);
    assert.ok(froms.length >= 2, 'multi-stage');
    const baseArg = ins.find(([k, a]) => k === 'ARG' && a.startsWith('NODE_IMAGE='));
    assert.equal(baseArg?.[1], 'NODE_IMAGE=node:24-bookworm-slim');
    for (const f of froms) assert.match(f, /^\$\{NODE_IMAGE\}( AS [a-z-]+)?$/, 'every stage is the pinned Node 24 bookworm-slim base');

    const final = ins.slice(ins.findLastIndex(([k]) => k === 'FROM'));
    const users = final.filter(([k]) => k === 'USER').map(([, a]) => a);
    assert.deepEqual(users, ['10001:10001'], 'the runtime stage ends as one numeric non-root user');
    assert.ok(final.some(([k, a]) => k === 'HEALTHCHECK' && /CMD \["node",/.test(a)), 'HEALTHCHECK with Node, exec form');
    assert.ok(final.some(([k, a]) => k === 'ENTRYPOINT' && a.startsWith('["/usr/bin/tini", "--", "node"')), 'tini as PID 1, exec form');
    for (const label of ['title', 'description', 'version', 'revision', 'created', 'licenses', 'source']) {
      assert.ok(final.some(([k, a]) => k === 'LABEL' && a.includes(`org.opencontainers.image.${label}=`)), `OCI label ${label}`);
    }
    for (const [k, a] of final) {
      if (k === 'COPY' && !a.startsWith('--from=')) assert.doesNotMatch(a, /^(src|\.)\b/, `runtime stage copies built output only: COPY ${a}`);
      assert.notEqual(k, 'ADD', 'COPY, not ADD');
    }
    assert.ok(ins.some(([k, a]) => k === 'RUN' && a.includes('npm ci --omit=dev')), 'production dependencies installed with --omit=dev');
    for (const [k, a] of ins.filter(([k]) => k === 'RUN')) {
      if (a.includes('apt-get install')) {
        assert.match(a, /--no-install-recommends/, `${k} ${a}`);
        assert.match(a, /rm -rf \/var\/lib\/apt\/lists/, 'apt lists removed in the same layer');
      }
      if (a.includes('npm ci')) assert.match(a, /--ignore-scripts/, 'no install scripts run during the build');
    }
    assert.doesNotMatch(DOCKERFILE, /:latest\b/);
  });

  it('.dockerignore admits only what the build reads', () => {
    const lines = readFileSync(join(REPO, '.dockerignore'), 'utf8')
      .split('\n')
      .filter((l) => l.trim() && !l.startsWith('#'));
    assert.equal(lines[0], '*', 'deny everything first');
    const allowed = lines.slice(1).map((l) => l.replace(/^!/, ''));
    assert.deepEqual(allowed.sort(), ['deploy/docker/healthcheck.mjs', 'package-lock.json', 'package.json', 'src/', 'tsconfig.build.json', 'tsconfig.json'].sort());
  });
});
