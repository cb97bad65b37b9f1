import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { parseAllDocuments } from 'yaml';
import { REPO } from './docker.ts';

/**
 * Validation of Kubernetes objects against the API's OpenAPI schemas, as published in the npm
 * packages `kubernetes-models` and `@kubernetes-models/prometheus-operator` (generated from them):
 *  1. each object's model `validate()` (types, required fields, formats), and
 *  2. strict fields: every object is type-checked by TypeScript as a literal of its model's
 *     interface, so an unknown field anywhere — a misspelt key, a field at the wrong level — is
 *     an error (the runtime validators let unknown fields through).
 */
export interface K8sObject {
  readonly source: string;
  readonly obj: { apiVersion?: string; kind?: string; metadata?: { name?: string } } & Record<string, unknown>;
}

export function parseManifests(text: string, source: string): K8sObject[] {
  return parseAllDocuments(text)
    .map((d) => {
      if (d.errors.length > 0) throw new Error(`${source}: ${d.errors[0]!.message}`);
      return d.toJS() as K8sObject['obj'] | null;
    })
    .filter((o): o is K8sObject['obj'] => o !== null && typeof o === 'object')
    .map((obj) => ({ source, obj }));
}

function modelModule(apiVersion: string, kind: string): string | undefined {
  if (apiVersion.startsWith('monitoring.coreos.com/')) return `@kubernetes-models/prometheus-operator/${apiVersion}/${kind}`;
  if (/^[a-z0-9.]*\/?v[0-9]+((alpha|beta)[0-9]+)?$/.test(apiVersion)) return `kubernetes-models/${apiVersion}/${kind}`;
  return undefined;
}

const name = (o: K8sObject) => `${o.source}: ${o.obj.kind ?? '?'}/${o.obj.metadata?.name ?? '?'}`;

/** Every problem found, one line each; empty when all objects are valid. */
export async function validateObjects(objects: readonly K8sObject[]): Promise<string[]> {
  const problems: string[] = [];
  const typed: { o: K8sObject; spec: string; kind: string }[] = [];
  for (const o of objects) {
    const { apiVersion, kind } = o.obj;
    const spec = apiVersion && kind ? modelModule(apiVersion, kind) : undefined;
    if (!spec || !kind) {
      problems.push(`${name(o)}: no schema for apiVersion ${apiVersion} kind ${kind}`);
      continue;
    }
    let Model: new (data: unknown) => { validate(): void };
    try {
      Model = ((await import(spec)) as Record<string, new (data: unknown) => { validate(): void }>)[kind]!;
      if (typeof Model !== 'function') throw new Error('no such kind');
    } catch {
      problems.push(`${name(o)}: unknown kind ${kind} of ${apiVersion}`);
      continue;
    }
    try {
      new Model(o.obj).validate();
    } catch (err) {
      problems.push(`${name(o)}: ${(err as Error).message.split('\n').slice(0, 6).join(' ')}`);
    }
    typed.push({ o, spec, kind });
  }
  problems.push(...strictFields(typed));
  return problems;
}

function strictFields(items: { o: K8sObject; spec: string; kind: string }[]): string[] {
  if (items.length === 0) return [];
  const dir = join(REPO, '.tmp');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `k8s-strict-${process.pid}-${Date.now()}.ts`);
  // One object per line, so a diagnostic's line names its object.
  const lines = items.map(({ spec, kind }, i) => `import type { I${kind} as T${i} } from '${spec}';`);
  const first = lines.length;
  lines.push(...items.map(({ o }, i) => `export const o${i}: T${i} = ${JSON.stringify(o.obj)};`));
  writeFileSync(file, `${lines.join('\n')}\n`);
  try {
    const program = ts.createProgram([file], {
      strict: true,
      noEmit: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      skipLibCheck: true,
      types: [],
    });
    return ts.getPreEmitDiagnostics(program, program.getSourceFile(file)).map((d) => {
      const line = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line : -1;
      const item = items[line - first];
      const text = ts.flattenDiagnosticMessageText(d.messageText, ' ');
      return `${item ? name(item.o) : 'imports'}: ${text.length > 400 ? `${text.slice(0, 400)}…` : text}`;
    });
  } finally {
    rmSync(file, { force: true });
  }
}
