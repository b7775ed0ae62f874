import os from 'node:os';
import type { AccountLifecycle, AccountQuery, Actor, LifecycleRefusal } from '../flows/account-lifecycle.js';
import { isUpstreamProviderName } from '../upstream/index.js';

// `accounts ...` and `audit ...` of the CLI (issue 15): parsed first (a usage error needs no
// database), then run against the account lifecycle (src/flows/account-lifecycle.ts) as the operator.

export const ACCOUNTS_USAGE = `  accounts find --email <address> | --phone <number> | --sub <sub> [--client <client_id>]
                | --issuer <issuer> --subject <subject>
                                   find an account (a client's pairwise sub with --client)
  accounts show <account_id>       methods, links, sessions, grants, recent audit events
  accounts disable <account_id> [--reason <text>]
                                   no sign-in by any method; sessions and grants end at once
  accounts enable <account_id>     lift a disable
  accounts delete <account_id> --yes
                                   delete the account, as the person's own deletion does
  accounts unlink <account_id> <google|apple>
                                   unlink a provider (refused when it is the last way to sign in)
  accounts end-sessions <account_id>
                                   sign the account out everywhere (grants revoked, back-channel logout)
  accounts export <account_id>     the person's data (the same JSON as /account/export)
  accounts audit-export --from <ISO date> --to <ISO date> [--account <account_id>]
                                   audit events in [from, to), as JSON lines
  audit sweep                      delete audit events older than AUDIT_RETENTION_DAYS`;

export type AccountsCommand =
  | { name: 'find'; query: AccountQuery }
  | { name: 'show' | 'enable' | 'end-sessions' | 'export'; accountId: string }
  | { name: 'disable'; accountId: string; reason: string }
  | { name: 'delete'; accountId: string }
  | { name: 'unlink'; accountId: string; provider: 'google' | 'apple' }
  | { name: 'audit-export'; from: Date; to: Date; accountId: string | undefined }
  | { name: 'audit-sweep' };

/** `--name value` pairs and bare words; a flag without a value is a usage error (except --yes). */
function split(args: string[], usage: (m: string) => Error): { words: string[]; flags: Map<string, string> } {
  const words: string[] = [];
  const flags = new Map<string, string>();
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (a === '--yes') { flags.set('yes', 'true'); continue; }
    if (a.startsWith('--')) {
      const value = args[i + 1];
      if (value === undefined || value.startsWith('--')) throw usage(`${a} needs a value`);
      flags.set(a.slice(2), value);
      i += 1;
    } else {
      words.push(a);
    }
  }
  return { words, flags };
}

function date(value: string | undefined, flag: string, usage: (m: string) => Error): Date {
  const d = value === undefined ? undefined : new Date(value);
  if (!d || Number.isNaN(d.getTime())) throw usage(`${flag} needs a date like 2026-01-31 or 2026-01-31T12:00:00Z`);
  return d;
}

export function parseAccountsCommand(group: 'accounts' | 'audit', argv: string[], usage: (m: string) => Error): AccountsCommand {
  const [command, ...rest] = argv;
  const { words, flags } = split(rest, usage);
  const allow = (...known: string[]) => {
    for (const f of flags.keys()) if (!known.includes(f)) throw usage(`${group} ${command ?? ''}: unexpected --${f}`);
  };
  const accountId = () => {
    const id = words[0];
    if (!id) throw usage(`${group} ${command ?? ''} needs an account id`);
    return id;
  };
  if (group === 'audit') {
    if (command !== 'sweep') throw usage(`unknown audit command ${command ?? ''}`);
    allow();
    return { name: 'audit-sweep' };
  }
  switch (command) {
    case 'find': {
      allow('email', 'phone', 'sub', 'client', 'issuer', 'subject');
      const [email, phone, sub, issuer, subject] = ['email', 'phone', 'sub', 'issuer', 'subject'].map((f) => flags.get(f));
      const given = [email, phone, sub, issuer ?? subject].filter((v) => v !== undefined).length;
      if (given !== 1) throw usage('accounts find needs exactly one of --email, --phone, --sub, --issuer with --subject');
      if (email) return { name: 'find', query: { email } };
      if (phone) return { name: 'find', query: { phone } };
      if (sub) return { name: 'find', query: { sub, clientId: flags.get('client') } };
      if (!issuer || !subject) throw usage('accounts find --issuer needs --subject too');
      return { name: 'find', query: { issuer, subject } };
    }
    case 'show': case 'enable': case 'end-sessions': case 'export':
      allow();
      return { name: command, accountId: accountId() };
    case 'disable':
      allow('reason');
      return { name: 'disable', accountId: accountId(), reason: flags.get('reason') ?? 'operator' };
    case 'delete':
      allow('yes');
      if (flags.get('yes') !== 'true') throw usage('accounts delete deletes at once and for good: add --yes to confirm');
      return { name: 'delete', accountId: accountId() };
    case 'unlink': {
      allow();
      const provider = words[1];
      if (!provider || !isUpstreamProviderName(provider)) throw usage('accounts unlink needs an account id and google or apple');
      return { name: 'unlink', accountId: accountId(), provider };
    }
    case 'audit-export': {
      allow('from', 'to', 'account');
      const from = date(flags.get('from'), '--from', usage);
      const to = date(flags.get('to'), '--to', usage);
      if (to <= from) throw usage('--to must be after --from');
      return { name: 'audit-export', from, to, accountId: flags.get('account') };
    }
    default:
      throw usage(`unknown accounts command ${command ?? ''}`);
  }
}

/** The operator at the CLI: TSUNAGI_OPERATOR, else the OS user, as written into the audit log. */
export function cliActor(env: NodeJS.ProcessEnv = process.env): Actor {
  let name = env.TSUNAGI_OPERATOR;
  if (!name) {
    try { name = os.userInfo().username; } catch { name = 'unknown'; }
  }
  return { kind: 'operator', name: name.slice(0, 100) };
}

const REFUSALS: Record<LifecycleRefusal, string> = {
  not_found: 'no such account (or no such linked provider)',
  already_disabled: 'the account is already disabled',
  not_disabled: 'the account is not disabled',
  last_method: 'this is the account\'s last way to sign in: it stays linked (delete the account instead, or let the person add another method)',
};

/**
 * Runs one command; `refused` builds the error for an operation the lifecycle refused (exit 1 with
 * its message). Results go to `out` as JSON (audit-export: one event per line).
 */
export async function runAccountsCommand(
  cmd: AccountsCommand, lifecycle: AccountLifecycle, actor: Actor,
  io: { out(value: unknown): void; refused(message: string): Error },
): Promise<void> {
  const check = <T extends { ok: boolean }>(outcome: T | { ok: false; reason: LifecycleRefusal }): T => {
    if (!outcome.ok) throw io.refused(REFUSALS[(outcome as { reason: LifecycleRefusal }).reason]);
    return outcome as T;
  };
  switch (cmd.name) {
    case 'find':
      io.out(await lifecycle.findAccounts(cmd.query, actor));
      return;
    case 'show': {
      const details = await lifecycle.showAccount(cmd.accountId, actor);
      if (!details) throw io.refused(REFUSALS.not_found);
      io.out(details);
      return;
    }
    case 'export': {
      const data = await lifecycle.exportPersonalData(cmd.accountId, actor);
      if (!data) throw io.refused(REFUSALS.not_found);
      io.out(data);
      return;
    }
    case 'disable':
      io.out({ disabled: cmd.accountId, ...stripOk(check(await lifecycle.disableAccount(cmd.accountId, actor, cmd.reason))) });
      return;
    case 'enable':
      check(await lifecycle.enableAccount(cmd.accountId, actor));
      io.out({ enabled: cmd.accountId });
      return;
    case 'end-sessions':
      io.out({ account: cmd.accountId, ...stripOk(check(await lifecycle.endSessions(cmd.accountId, actor))) });
      return;
    case 'delete':
      io.out({ deleted: cmd.accountId, ...stripOk(check(await lifecycle.deleteAccount(cmd.accountId, actor))) });
      return;
    case 'unlink':
      io.out({ account: cmd.accountId, unlinked: cmd.provider, ...stripOk(check(await lifecycle.unlinkProvider(cmd.accountId, cmd.provider, actor))) });
      return;
    case 'audit-export': {
      const events = await lifecycle.exportAuditEvents({ from: cmd.from, to: cmd.to, accountId: cmd.accountId }, actor);
      io.out(events.map((e) => JSON.stringify(e)).join('\n'));
      return;
    }
    case 'audit-sweep':
      io.out({ swept: await lifecycle.sweepAuditEvents() });
      return;
  }
}

function stripOk<T extends { ok: true }>(outcome: T): Omit<T, 'ok'> {
  const { ok: _ok, ...rest } = outcome;
  return rest;
}
