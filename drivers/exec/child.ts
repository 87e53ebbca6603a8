// A supervised external process (ffmpeg, rpicam-vid …), go2rtc-style: own process group,
// stderr tail kept for the error message, stop = SIGTERM to the group, wait, SIGKILL.

import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { EdgeError } from '../../runtime/engine/api.js';

export interface ChildOptions {
  cmd: string;
  args: string[];
  /** For errors and logs: "ffmpeg testpattern", "rpicam-vid". Must hold no secret. */
  label: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  stdin?: 'pipe' | 'ignore';
  /** How many stderr lines to keep for the error message. */
  stderrTailLines?: number;
  /** SIGTERM → SIGKILL grace. */
  killGraceMs?: number;
  /** Each stderr line, for progress/error parsing. Lines are cut at 1 KiB. */
  onStderrLine?: (line: string) => void;
  /** Strings that must never appear in an error message (passwords in URLs). */
  redact?: string[];
}

export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

// Every live child, so a dying parent can still take its children down (process 'exit').
const live = new Set<SupervisedChild>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const c of live) c.killNow();
  });
}

const MAX_LINE = 1024;

export class SupervisedChild {
  readonly proc: ChildProcess;
  readonly exited: Promise<ChildExit>;
  private readonly tail: string[] = [];
  private partial = '';
  private stopping: Promise<void> | undefined;
  private exitInfo: ChildExit | undefined;
  readonly startedAt = Date.now();

  constructor(private readonly opts: ChildOptions) {
    installExitHook();
    // detached: its own process group, so stop() reaches grandchildren too and a
    // Ctrl-C in the terminal does not hit ffmpeg before we do.
    this.proc = spawn(opts.cmd, opts.args, {
      detached: true,
      stdio: [opts.stdin ?? 'ignore', 'pipe', 'pipe'],
      env: opts.env ?? process.env,
      cwd: opts.cwd,
    });
    live.add(this);
    this.exited = new Promise<ChildExit>((resolve) => {
      const done = (code: number | null, signal: NodeJS.Signals | null) => {
        if (this.exitInfo) return;
        this.exitInfo = { code, signal };
        live.delete(this);
        if (this.partial) this.pushLine(this.partial);
        this.partial = '';
        resolve(this.exitInfo);
      };
      this.proc.once('exit', done);
      this.proc.once('error', (err) => {
        this.pushLine(`spawn error: ${err.message}`);
        done(null, null);
      });
    });
    this.proc.stderr!.setEncoding('utf8');
    this.proc.stderr!.on('data', (s: string) => this.onStderr(s));
    // A reader that goes away must not crash us with EPIPE.
    this.proc.stdin?.on('error', () => {});
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }

  get stdout(): Readable {
    return this.proc.stdout!;
  }

  get stdin(): Writable | null {
    return this.proc.stdin;
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  stderrTail(): string[] {
    return [...this.tail];
  }

  /** A failure error carrying the stderr tail (not just "exit code 1"). */
  failure(code: string, what: string): EdgeError {
    const tail = this.stderrTail().slice(-8).join(' | ');
    return new EdgeError(code, `${this.opts.label} ${what}${tail ? `: ${this.redact(tail)}` : ''}`, {
      process: this.opts.label,
      exitCode: this.exitInfo?.code ?? null,
      signal: this.exitInfo?.signal ?? null,
    });
  }

  /** SIGTERM the group, wait the grace, SIGKILL it. Idempotent, never throws. */
  stop(): Promise<void> {
    if (this.stopping) return this.stopping;
    this.stopping = (async () => {
      if (!this.running) return;
      this.signalGroup('SIGTERM');
      const grace = this.opts.killGraceMs ?? 2000;
      let timer: NodeJS.Timeout | undefined;
      const killed = await Promise.race([
        this.exited.then(() => false),
        new Promise<boolean>((r) => {
          timer = setTimeout(() => r(true), grace);
        }),
      ]);
      clearTimeout(timer);
      if (killed) {
        this.signalGroup('SIGKILL');
        await this.exited;
      }
      // Grandchildren that ignored SIGTERM while the leader exited.
      this.signalGroup('SIGKILL');
    })();
    return this.stopping;
  }

  killNow(): void {
    this.signalGroup('SIGKILL');
  }

  private signalGroup(sig: NodeJS.Signals): void {
    const pid = this.proc.pid;
    if (pid === undefined) return;
    try {
      process.kill(-pid, sig);
    } catch {
      // ESRCH: the group is gone already.
    }
  }

  private onStderr(s: string): void {
    const text = this.partial + s;
    const lines = text.split(/\r?\n|\r/);
    this.partial = lines.pop() ?? '';
    if (this.partial.length > MAX_LINE) {
      this.pushLine(this.partial.slice(0, MAX_LINE));
      this.partial = '';
    }
    for (const l of lines) if (l.trim()) this.pushLine(l.slice(0, MAX_LINE));
  }

  private pushLine(line: string): void {
    const clean = this.redact(line);
    this.tail.push(clean);
    if (this.tail.length > (this.opts.stderrTailLines ?? 20)) this.tail.shift();
    try {
      this.opts.onStderrLine?.(clean);
    } catch {
      // A parser's throw must not take the process supervision down.
    }
  }

  private redact(s: string): string {
    let out = s;
    for (const secret of this.opts.redact ?? []) if (secret) out = out.split(secret).join('***');
    return out;
  }
}

export interface RunChildOptions extends ChildOptions {
  /** No stdout byte within this time → START_TIMEOUT (the device never came up). */
  startTimeoutMs?: number;
  /** Stdout stalled this long after data flowed → STALLED (a cut camera keeps ffmpeg waiting). */
  stallTimeoutMs?: number;
}

/**
 * Run a child once: feed stdout chunks to onData until it exits or `signal` aborts.
 * Resolves after a clean stop on abort; otherwise rejects with an EdgeError carrying the stderr
 * tail: PROCESS_EXITED (exit 0 included: for a live source the stream ending is a failure),
 * START_TIMEOUT or STALLED. Always leaves no process behind.
 */
export async function runChild(
  opts: RunChildOptions,
  onData: (chunk: Buffer) => void,
  signal: AbortSignal,
  onStart?: (child: SupervisedChild) => void,
): Promise<void> {
  if (signal.aborted) return;
  const child = new SupervisedChild(opts);
  onStart?.(child);
  let gotData = false;
  // Monotonic: an NTP step of the wall clock must not look like a stall.
  const started = performance.now();
  let lastData = started;
  let timeoutErr: EdgeError | undefined;
  const onAbort = () => void child.stop();
  signal.addEventListener('abort', onAbort, { once: true });
  const watchdog = setInterval(() => {
    const now = performance.now();
    if (!gotData && opts.startTimeoutMs && now - started > opts.startTimeoutMs) {
      timeoutErr = child.failure('START_TIMEOUT', `produced no output in ${opts.startTimeoutMs} ms`);
      void child.stop();
    } else if (gotData && opts.stallTimeoutMs && now - lastData > opts.stallTimeoutMs) {
      timeoutErr = child.failure('STALLED', `output stalled for ${opts.stallTimeoutMs} ms`);
      void child.stop();
    }
  }, 250);
  child.stdout.on('data', (chunk: Buffer) => {
    gotData = true;
    lastData = performance.now();
    try {
      onData(chunk);
    } catch (err) {
      timeoutErr = err instanceof EdgeError ? err : new EdgeError('PARSE_FAILED', String((err as Error)?.message ?? err));
      void child.stop();
    }
  });
  try {
    const exit = await child.exited;
    if (signal.aborted) return;
    if (timeoutErr) throw timeoutErr;
    throw child.failure(
      'PROCESS_EXITED',
      exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`,
    );
  } finally {
    clearInterval(watchdog);
    signal.removeEventListener('abort', onAbort);
    await child.stop();
  }
}
