import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { EventEmitter, once } from 'node:events';
import { createInterface } from 'node:readline';

/** A child process the test owns: killed by the test, and on test-process exit as a backstop. */
export interface Child {
  readonly proc: ChildProcess;
  readonly pid: number;
  /** Lines seen on stdout and stderr so far (for diagnostics). */
  readonly output: string[];
  /** Emits 'line' for every stdout line (stderr lines go to `output` only). */
  readonly lines: EventEmitter<{ line: [string] }>;
  kill(signal?: NodeJS.Signals): Promise<void>;
  exited(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

export function spawnChild(command: string, args: string[], opts: SpawnOptions = {}): Child {
  const proc = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  live.add(proc);
  const output: string[] = [];
  const lines = new EventEmitter<{ line: [string] }>();
  const exit = once(proc, 'exit').then(([code, signal]) => {
    live.delete(proc);
    return { code: code as number | null, signal: signal as NodeJS.Signals | null };
  });
  if (proc.stdout) {
    createInterface({ input: proc.stdout }).on('line', (l) => {
      output.push(l);
      lines.emit('line', l);
    });
  }
  if (proc.stderr) createInterface({ input: proc.stderr }).on('line', (l) => output.push(l));
  return {
    proc,
    pid: proc.pid!,
    output,
    lines,
    async kill(signal: NodeJS.Signals = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      await exit;
    },
    exited: () => exit,
  };
}

/** Resolves with the first stdout line that `match` accepts (parsed), or rejects on exit/timeout. */
export function waitForLine<T>(child: Child, match: (line: string) => T | undefined, timeoutMs = 15_000): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const seen = () => {
      for (const l of child.output) {
        const v = match(l);
        if (v !== undefined) return v;
      }
      return undefined;
    };
    const first = seen();
    if (first !== undefined) return resolve(first);
    const timer = setTimeout(() => finish(new Error(`timed out waiting for output; got:\n${child.output.join('\n')}`)), timeoutMs);
    const onExit = () => finish(new Error(`process exited before ready; output:\n${child.output.join('\n')}`));
    child.proc.once('exit', onExit);
    function finish(err: Error | undefined, v?: T) {
      clearTimeout(timer);
      child.lines.off('line', onLine);
      child.proc.off('exit', onExit);
      if (err) reject(err);
      else resolve(v as T);
    }
    function onLine(l: string) {
      const v = match(l);
      if (v !== undefined) finish(undefined, v);
    }
    child.lines.on('line', onLine);
  });
}

/** A script that prints `{"listening":<port>}` once it serves: started with this Node, killed again if it never gets there. */
export async function startListening(script: string, args: string[] = [], env?: NodeJS.ProcessEnv): Promise<{ child: Child; port: number }> {
  const child = spawnChild(process.execPath, [script, ...args], env ? { env } : {});
  try {
    const port = await waitForLine(child, (l) => {
      try {
        return (JSON.parse(l) as { listening?: number }).listening;
      } catch {
        return undefined;
      }
    });
    return { child, port };
  } catch (err) {
    await child.kill('SIGKILL');
    throw err;
  }
}
