/**
 * Runs `sluice perf … --json` as a separate process and reads its JSON summary; for the idle
 * modes, waits for its {"ready":true} line, lets the caller measure, then sends SIGTERM.
 */
import { spawn } from 'node:child_process';
import { appendFileSync, readFileSync } from 'node:fs';

export interface PerfOutcome {
  /** The last JSON line on stdout (the summary), or null. */
  json: Record<string, unknown> | null;
  code: number | null;
  /** Last lines of stderr (the per-second lines and any error). */
  stderrTail: string;
}

function lastJson(stdout: string): Record<string, unknown> | null {
  const lines = stdout.split('\n').filter((l) => l.startsWith('{'));
  for (let i = lines.length - 1; i >= 0; i--) {
    try {
      const v = JSON.parse(lines[i]!) as Record<string, unknown>;
      if (v.ready !== true) return v;
    } catch {
      // not JSON after all
    }
  }
  return null;
}

/**
 * Spawns perf; calls onReady (if given) once a {"ready":true} line appears and then SIGTERMs
 * it. Gives up (SIGKILL) after timeoutMs.
 */
export function invokePerf(
  mainJs: string,
  args: string[],
  logFile: string,
  timeoutMs: number,
  onReady?: (ready: Record<string, unknown>) => Promise<void>,
): Promise<PerfOutcome> {
  appendFileSync(logFile, `\n$ node ${mainJs} perf ${args.join(' ')}\n`);
  const child = spawn(process.execPath, [mainJs, 'perf', ...args, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let readySeen = false;
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString('utf8');
    if (onReady !== undefined && !readySeen) {
      const line = stdout.split('\n').find((l) => l.includes('"ready":true'));
      if (line !== undefined) {
        readySeen = true;
        onReady(JSON.parse(line) as Record<string, unknown>).finally(() => child.kill('SIGTERM'));
      }
    }
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString('utf8');
    appendFileSync(logFile, d);
  });
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      stderr += `\n(runner: perf timed out after ${Math.round(timeoutMs / 1000)} s and was killed)`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      appendFileSync(logFile, stdout);
      const tail = stderr.trim().split('\n').slice(-6).join('\n');
      resolve({ json: lastJson(stdout), code, stderrTail: tail });
    });
  });
}

/** VmRSS of a process in KiB, from /proc/<pid>/status. */
export function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (m === null) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]);
}
