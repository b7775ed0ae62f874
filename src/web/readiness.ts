import { DeadlineExceeded, withDeadline } from '../failures/dependency.js';

export type CheckResult = 'ok' | 'unreachable' | 'timeout';

export interface ReadinessReport {
  ready: boolean;
  status: 'ready' | 'not_ready' | 'draining';
  checks: Record<string, CheckResult>;
}

/** Each check has this long, all run at once: /readyz answers within about a second whatever hangs. */
export const READINESS_CHECK_MS = 900;

/**
 * What /readyz reports: each dependency reachable within its deadline, and not shutting down. When
 * the process starts draining (SIGTERM) it is not ready at once, without asking anything, so a load
 * balancer stops sending new requests before the process goes away.
 */
export class Readiness {
  private drainingSince: Date | undefined;

  constructor(private readonly checks: Record<string, () => Promise<unknown>>, private readonly deadlineMs = READINESS_CHECK_MS) {}

  startDraining(): void {
    this.drainingSince ??= new Date();
  }

  get draining(): boolean {
    return this.drainingSince !== undefined;
  }

  async report(): Promise<ReadinessReport> {
    if (this.draining) return { ready: false, status: 'draining', checks: {} };
    const entries = await Promise.all(Object.entries(this.checks).map(async ([name, check]): Promise<[string, CheckResult]> => {
      try {
        await withDeadline(check(), this.deadlineMs, name);
        return [name, 'ok'];
      } catch (err) {
        return [name, err instanceof DeadlineExceeded ? 'timeout' : 'unreachable'];
      }
    }));
    const checks = Object.fromEntries(entries);
    const ready = entries.every(([, result]) => result === 'ok');
    return { ready, status: ready ? 'ready' : 'not_ready', checks };
  }
}
