import { execFileSync, type SpawnOptions } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { spawnChild, waitForLine, type Child } from '../test/helpers/process.ts';

/**
 * Every process the bench starts is registered here, so a normal end, an error and Ctrl-C all
 * stop the same set (test/helpers/process.ts adds a SIGKILL backstop when this process exits).
 */
const owned = new Set<Child>();

export function spawnOwned(command: string, args: string[], opts: SpawnOptions = {}): Child {
  return own(spawnChild(command, args, opts));
}

export function own(child: Child): Child {
  owned.add(child);
  void child.exited().then(() => owned.delete(child));
  return child;
}

/** SIGTERM, then SIGKILL if the process has not exited within `graceMs`. */
export async function stopChild(child: Child, graceMs = 5_000): Promise<void> {
  const timer = setTimeout(() => child.proc.kill('SIGKILL'), graceMs);
  try {
    await child.kill('SIGTERM');
  } finally {
    clearTimeout(timer);
  }
}

export async function stopAll(): Promise<void> {
  await Promise.allSettled([...owned].map((c) => stopChild(c)));
}

/** The first JSON line on the child's stdout that `pick` accepts. */
export function waitForJson<T>(child: Child, pick: (v: Record<string, unknown>) => T | undefined, timeoutMs = 20_000): Promise<T> {
  return waitForLine(
    child,
    (line) => {
      try {
        const v = JSON.parse(line) as unknown;
        return v && typeof v === 'object' ? pick(v as Record<string, unknown>) : undefined;
      } catch {
        return undefined;
      }
    },
    timeoutMs,
  );
}

/** The open-files limit (soft) of a process, from /proc/<pid>/limits. */
export function fdLimit(pid: number): number {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'));
  return !m || m[1] === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(m[1]);
}

/** File descriptors a process has open now. */
export function openFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/**
 * Raises a running process's open-files limit to `want` (soft and hard) with prlimit(1), which
 * needs CAP_SYS_RESOURCE to go past the hard limit; returns the limit it has afterwards.
 */
export function raiseFdLimit(pid: number, want: number): number {
  if (fdLimit(pid) >= want) return fdLimit(pid);
  try {
    execFileSync('prlimit', ['--pid', String(pid), `--nofile=${want}:${want}`], { stdio: 'ignore' });
  } catch {
    // Not allowed (or no prlimit): the caller works within the limit there is.
  }
  return fdLimit(pid);
}
