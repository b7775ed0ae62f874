// Pure formatting and judging of benchmark results: no I/O here, so the unit tests can check it.

/** One server measured in one scenario, after the warm-up. */
export interface Measurement {
  /** Completed requests (or, for the SSO scenario, completed round trips) in the measured window. */
  completed: number;
  seconds: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** Non-2xx answers (a wrong status for the SSO steps), socket errors and timeouts. */
  errors: number;
  /** What the errors were, when there were any (status codes, first error message). */
  errorDetail?: string;
}

export interface ScenarioResult {
  id: string;
  title: string;
  /** A token-endpoint scenario: the p99 target applies. */
  tokenEndpoint: boolean;
  tsunagi?: Measurement;
  bare?: Measurement;
  note?: string;
}

export interface RoundTripCount {
  scenario: string;
  /** Requests the counts were averaged over. */
  requests: number;
  postgresQueries: number;
  redisRoundTrips: number;
  redisCommands: number;
  /** The round trips of one request, labelled ("pg: SELECT accounts", "redis: MULTI(DEL AccessToken, ...)"). */
  calls?: string[];
}

export interface ScalingResult {
  scenario: string;
  one?: Measurement;
  two?: Measurement;
}

export interface MachineInfo {
  nproc: number;
  cpu: string;
  node: string;
  date: string;
  loadAverage: number[];
  backends: string;
}

export interface BenchResult {
  machine: MachineInfo;
  settings: { warmupSeconds: number; durationSeconds: number; connections: number };
  scenarios: ScenarioResult[];
  peakRssMb: { tsunagi?: number; bare?: number; tsunagiClusterWorkers?: number[] };
  scaling: ScalingResult[] | { skipped: string };
  roundTrips: RoundTripCount[] | { skipped: string };
  targets: TargetCheck[];
  notes: string[];
}

export interface TargetCheck {
  scenario: string;
  target: string;
  /** undefined: could not be judged (the scenario did not run). */
  pass: boolean | undefined;
  measured: string;
}

/**
 * The targets of issue 13 (same run, same machine, 32 connections): Tsunagi's throughput as a share
 * of the bare provider's per scenario, p99 under 50 ms for every token-endpoint scenario, no errors,
 * one process' peak RSS under 200 MB; and the earlier absolute floors for ES256 refreshes and SSO.
 */
export const TARGETS = {
  ratioOfBare: {
    'client-credentials': 0.85, 'client-credentials-jwt': 0.85, 'refresh-rs256': 0.7, 'refresh-es256': 0.7,
    introspection: 0.6, userinfo: 0.6, sso: 0.5,
  } as Record<string, number>,
  refreshEs256PerSecond: 1000,
  ssoPerSecond: 300,
  tokenP99Ms: 50,
  peakRssMb: 200,
};

/** Nearest-rank percentile of values sorted ascending (p in 0..100); 0 for no values. */
export function percentile(sortedAscending: readonly number[], p: number): number {
  if (sortedAscending.length === 0) return 0;
  if (p <= 0) return sortedAscending[0] as number;
  const rank = Math.ceil((p / 100) * sortedAscending.length);
  return sortedAscending[Math.min(rank, sortedAscending.length) - 1] as number;
}

/** Tsunagi's throughput as a fraction of the bare provider's; undefined when either is missing. */
export function ratio(tsunagi: Measurement | undefined, bare: Measurement | undefined): number | undefined {
  if (!tsunagi || !bare || bare.perSecond <= 0) return undefined;
  return tsunagi.perSecond / bare.perSecond;
}

export function measurementFrom(latenciesMs: number[], completed: number, seconds: number, errors: number, errorDetail?: string): Measurement {
  const sorted = [...latenciesMs].sort((a, b) => a - b);
  return {
    completed,
    seconds,
    perSecond: seconds > 0 ? completed / seconds : 0,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    errors,
    ...(errorDetail ? { errorDetail } : {}),
  };
}

export function checkTargets(scenarios: ScenarioResult[]): TargetCheck[] {
  const checks: TargetCheck[] = [];
  for (const s of scenarios) {
    const t = s.tsunagi;
    const wanted = TARGETS.ratioOfBare[s.id];
    if (wanted !== undefined) {
      const r = ratio(t, s.bare);
      checks.push({ scenario: s.id, target: `≥ ${pct(wanted)} of bare`, pass: r === undefined ? undefined : r >= wanted, measured: r === undefined ? 'n/a' : pct(r) });
    }
    if (s.id === 'refresh-es256') {
      checks.push({ scenario: s.id, target: `≥ ${TARGETS.refreshEs256PerSecond}/s`, pass: t ? t.perSecond >= TARGETS.refreshEs256PerSecond : undefined, measured: t ? `${num(t.perSecond)}/s` : 'n/a' });
    }
    if (s.id === 'sso') {
      checks.push({ scenario: s.id, target: `≥ ${TARGETS.ssoPerSecond}/s`, pass: t ? t.perSecond >= TARGETS.ssoPerSecond : undefined, measured: t ? `${num(t.perSecond)}/s` : 'n/a' });
    }
    if (s.tokenEndpoint) {
      checks.push({ scenario: s.id, target: `p99 < ${TARGETS.tokenP99Ms} ms`, pass: t ? t.p99Ms < TARGETS.tokenP99Ms : undefined, measured: t ? `${ms(t.p99Ms)} ms` : 'n/a' });
    }
    checks.push({ scenario: s.id, target: '0 errors', pass: t ? t.errors === 0 && (s.bare?.errors ?? 0) === 0 : undefined, measured: t ? `${t.errors} (bare ${s.bare?.errors ?? 'n/a'})` : 'n/a' });
  }
  return checks;
}

export function pct(x: number): string { return `${Math.round(x * 100)}%`; }
export function num(x: number): string { return x >= 100 ? String(Math.round(x)) : x.toFixed(1); }
export function ms(x: number): string { return x >= 10 ? String(Math.round(x)) : x.toFixed(1); }

function cells(m: Measurement | undefined): string[] {
  return m ? [num(m.perSecond), ms(m.p50Ms), ms(m.p99Ms), String(m.errors)] : ['—', '—', '—', '—'];
}

/** One row's verdict: "pass", "FAIL (what failed)", or "—" when the row has no target. */
export function verdict(checks: TargetCheck[]): string {
  if (checks.length === 0) return '—';
  const failed = checks.filter((c) => c.pass === false);
  if (failed.length) return `**FAIL** (${failed.map((c) => `${c.target}: ${c.measured}`).join('; ')})`;
  if (checks.some((c) => c.pass === undefined)) return 'not judged';
  return 'pass';
}

export function renderMarkdown(result: BenchResult): string {
  const { machine, settings } = result;
  const lines: string[] = [];
  lines.push('## Tsunagi vs bare oidc-provider');
  lines.push('');
  lines.push(`Measured ${machine.date} on ${machine.nproc} cores (${machine.cpu}), Node ${machine.node}, ${machine.backends}; `
    + `load average at start ${machine.loadAverage.map((l) => l.toFixed(2)).join(' ')}. `
    + `${settings.connections} connections, ${settings.warmupSeconds} s warm-up then ${settings.durationSeconds} s measured per scenario and server; `
    + 'autocannon (or, for SSO, a keep-alive request loop) runs as its own process on the same machine.');
  lines.push('');
  lines.push('| scenario | Tsunagi req/s | p50 ms | p99 ms | errors | bare req/s | p50 ms | p99 ms | errors | ratio | targets | result |');
  lines.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |');
  for (const s of result.scenarios) {
    const r = ratio(s.tsunagi, s.bare);
    const checks = result.targets.filter((c) => c.scenario === s.id);
    lines.push(`| ${s.title} | ${[...cells(s.tsunagi), ...cells(s.bare)].join(' | ')} | ${r === undefined ? '—' : pct(r)} | `
      + `${checks.map((c) => c.target).join(', ') || '—'} | ${verdict(checks)} |`);
  }
  const notes = result.scenarios.filter((s) => s.note).map((s) => `- ${s.title}: ${s.note as string}`);
  if (notes.length) lines.push('', ...notes);

  lines.push('', '### Peak memory (VmHWM at the end of the run)', '');
  lines.push('| process | peak RSS |', '| --- | ---: |');
  const peak = result.peakRssMb.tsunagi;
  lines.push(`| Tsunagi (one process; target < ${TARGETS.peakRssMb} MB: ${peak === undefined ? 'n/a' : peak < TARGETS.peakRssMb ? 'pass' : '**FAIL**'}) | ${mb(peak)} |`);
  lines.push(`| bare oidc-provider | ${mb(result.peakRssMb.bare)} |`);
  for (const [i, w] of (result.peakRssMb.tsunagiClusterWorkers ?? []).entries()) lines.push(`| Tsunagi cluster worker ${i + 1} | ${mb(w)} |`);

  lines.push('', '### Scaling: 1 → 2 Tsunagi processes on one port (node:cluster)', '');
  if ('skipped' in result.scaling) {
    lines.push(`Skipped: ${result.scaling.skipped}`);
  } else {
    lines.push('| scenario | 1 process req/s | p99 ms | 2 processes req/s | p99 ms | speed-up |', '| --- | ---: | ---: | ---: | ---: | ---: |');
    for (const s of result.scaling) {
      const up = s.one && s.two && s.one.perSecond > 0 ? `${(s.two.perSecond / s.one.perSecond).toFixed(2)}×` : '—';
      lines.push(`| ${s.scenario} | ${s.one ? num(s.one.perSecond) : '—'} | ${s.one ? ms(s.one.p99Ms) : '—'} | ${s.two ? num(s.two.perSecond) : '—'} | ${s.two ? ms(s.two.p99Ms) : '—'} | ${up} |`);
    }
  }

  lines.push('', '### Database and Redis round trips per request (Tsunagi, counted in-process)', '');
  if ('skipped' in result.roundTrips) {
    lines.push(`Skipped: ${result.roundTrips.skipped}`);
  } else {
    lines.push('| scenario | Postgres queries | Redis round trips | Redis commands | the round trips of one request |', '| --- | ---: | ---: | ---: | --- |');
    for (const c of result.roundTrips) {
      lines.push(`| ${c.scenario} | ${perRequest(c.postgresQueries, c.requests)} | ${perRequest(c.redisRoundTrips, c.requests)} | ${perRequest(c.redisCommands, c.requests)} | ${(c.calls ?? []).join('; ') || '—'} |`);
    }
  }
  if (result.notes.length) lines.push('', '### Notes', '', ...result.notes.map((n) => `- ${n}`));
  return `${lines.join('\n')}\n`;
}

function mb(x: number | undefined): string { return x === undefined ? '—' : `${Math.round(x)} MB`; }

export function perRequest(total: number, requests: number): string {
  if (requests <= 0) return '—';
  const v = total / requests;
  return Number.isInteger(v) ? String(v) : v.toFixed(2);
}
