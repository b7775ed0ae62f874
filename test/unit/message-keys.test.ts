import fs from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { AUDIT_EVENT_TYPES } from '../../src/accounts/account-store.js';
import { PAUSED_SIGN_IN } from '../../src/flows/upstream.js';
import { NOTICES } from '../../src/http/account-routes.js';
import { APPROVAL_PAGE_SCOPES } from '../../src/http/ciba-routes.js';
import { catalogueKeys, LOCALES } from '../../src/i18n/index.js';
import { SCOPES } from '../../src/oidc/configuration.js';
import { UPSTREAM_PROVIDERS } from '../../src/upstream/index.js';

// A message the code can ask for and a catalogue lacks is a 500 on somebody's screen (issue 18: the
// account page after Apple's email notifications). These tests derive every message key the code can
// produce from the code itself, so such a gap fails CI instead:
// - every audit event type (the typed list the audit store accepts) has `event.<type>`;
// - every string literal in src/ and views/ that is shaped like a message key is in both catalogues;
// - every key built at run time in src/ (`code.error.${reason}`, 'event.' + type, ...) is enumerated
//   from the TypeScript type of what is interpolated, which must be a finite union of literals;
// - every key built inside a template (views/) is one of the sites listed below, with its values
//   taken from the code that feeds the template.

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const catalogues = Object.fromEntries(LOCALES.map((l) => [l, new Set(catalogueKeys(l))])) as Record<(typeof LOCALES)[number], Set<string>>;
const NAMESPACES = new Set(catalogueKeys('en').map((k) => k.split('.')[0] as string));
const KEY = /^([a-z][a-z0-9_]*)(\.[a-z0-9_]+)+$/;

/** Shaped like a message key: dotted lower-case segments starting with a namespace the catalogues use. */
const looksLikeKey = (s: string): boolean => KEY.test(s) && NAMESPACES.has(s.split('.')[0] as string);
const missingIn = (keys: Iterable<string>) =>
  [...new Set(keys)].flatMap((key) => LOCALES.filter((l) => !catalogues[l].has(key)).map((l) => `${l}: ${key}`)).sort();

function filesUnder(dir: string, ext: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return filesUnder(full, ext);
    return e.name.endsWith(ext) ? [full] : [];
  });
}

interface SourceKeys { literal: Map<string, string>; built: Map<string, string>; unenumerable: string[] }

/** Every message key src/ can produce, with where it comes from (file:line). */
function keysOfSources(): SourceKeys {
  const files = filesUnder(path.join(ROOT, 'src'), '.ts');
  const program = ts.createProgram(files, { strict: true, noEmit: true, skipLibCheck: true, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022, types: ['node'] });
  const checker = program.getTypeChecker();
  const found: SourceKeys = { literal: new Map(), built: new Map(), unenumerable: [] };
  const where = (node: ts.Node) => {
    const sf = node.getSourceFile();
    return `${path.relative(ROOT, sf.fileName)}:${sf.getLineAndCharacterOfPosition(node.getStart()).line + 1}`;
  };
  /** The finite set of strings an expression can be, from its type; undefined when it is not finite. */
  const valuesOf = (expr: ts.Expression): string[] | undefined => {
    if (ts.isStringLiteralLike(expr)) return [expr.text];
    const type = checker.getTypeAtLocation(expr);
    const members = type.isUnion() ? type.types : [type];
    const values: string[] = [];
    for (const m of members) {
      if (m.isStringLiteral()) values.push(m.value);
      else return undefined;
    }
    return values;
  };
  /** All strings of a sequence of fixed text and interpolated expressions; undefined if one is not finite. */
  const combine = (parts: (string | ts.Expression)[]): string[] | undefined => {
    let results = [''];
    for (const part of parts) {
      const options = typeof part === 'string' ? [part] : valuesOf(part);
      if (!options) return undefined;
      results = results.flatMap((r) => options.map((o) => r + o));
    }
    return results;
  };
  /** A key built at run time: a fixed part that names a message namespace, or values that do. */
  const builtSite = (node: ts.Node, parts: (string | ts.Expression)[]) => {
    const shape = parts.map((p) => (typeof p === 'string' ? p : 'x')).join('');
    const values = combine(parts);
    if (!values) {
      if (looksLikeKey(shape)) found.unenumerable.push(`${where(node)}: ${node.getText()}`);
      return;
    }
    if (values.some(looksLikeKey)) for (const v of values) found.built.set(v, where(node));
  };
  const visit = (node: ts.Node) => {
    if (ts.isTemplateExpression(node)) {
      builtSite(node, [node.head.text, ...node.templateSpans.flatMap((s) => [s.expression, s.literal.text])]);
    } else if (ts.isBinaryExpression(node) && node.operatorToken.kind === ts.SyntaxKind.PlusToken && ts.isStringLiteralLike(node.left)
      && !ts.isBinaryExpression(node.parent)) {
      builtSite(node, [node.left.text, node.right]);
    } else if (ts.isStringLiteralLike(node) && looksLikeKey(node.text) && !ts.isImportDeclaration(node.parent)) {
      found.literal.set(node.text, where(node));
    }
    ts.forEachChild(node, visit);
  };
  for (const sf of program.getSourceFiles()) if (files.includes(path.normalize(sf.fileName))) visit(sf);
  return found;
}

// Keys built inside templates (a template cannot be type-checked): the prefix, and the values the
// code hands the template for it.
const TEMPLATE_SITES: Record<string, { prefix: string; values: readonly string[] }[]> = {
  // describeConsent (src/flows/consent.ts) lists the scopes asked for, except openid.
  'views/consent.eta': [{ prefix: 'scope.', values: SCOPES.filter((s) => s !== 'openid') }],
  // The approval page of a CIBA request (src/http/ciba-routes.ts) lists email, phone and profile.
  'views/ciba-approve.eta': [{ prefix: 'scope.', values: APPROVAL_PAGE_SCOPES }],
  'views/account.eta': [
    { prefix: 'account.notice.', values: [...NOTICES] },
    // A paused Google/Apple sign-in (src/flows/upstream.ts pausedSignIn).
    { prefix: 'account.providers_', values: PAUSED_SIGN_IN },
  ],
  'views/login.eta': [{ prefix: 'login.continue_with_', values: UPSTREAM_PROVIDERS }],
};

describe('every message the code can ask for is in every catalogue', () => {
  const sources = keysOfSources();

  it('has a message for every audit event type, including Apple\'s email notifications', () => {
    expect(AUDIT_EVENT_TYPES).toEqual(expect.arrayContaining(['upstream_email_disabled', 'upstream_email_enabled', 'upstream_notification_ignored']));
    expect(missingIn([...AUDIT_EVENT_TYPES.map((t) => `event.${t}`), 'event.unknown'])).toEqual([]);
  });

  it('has every key written out in src/', () => {
    expect(sources.literal.size).toBeGreaterThan(30);
    expect(missingIn(sources.literal.keys())).toEqual([]);
  });

  it('can enumerate every key src/ builds at run time, and has each of them', () => {
    // A key built from a plain string cannot be checked: give what is interpolated a literal union type.
    expect(sources.unenumerable).toEqual([]);
    expect([...sources.built.keys()]).toEqual(expect.arrayContaining(['code.error.wrong_code', 'event.upstream_email_disabled', 'mail.notify.signup.subject']));
    expect(missingIn(sources.built.keys())).toEqual([]);
  });

  it('has every key the templates ask for, and knows every key a template builds', () => {
    const keys: string[] = [];
    const unknownSites: string[] = [];
    for (const file of filesUnder(path.join(ROOT, 'views'), '.eta')) {
      const name = path.relative(ROOT, file);
      const text = fs.readFileSync(file, 'utf8');
      for (const m of text.matchAll(/'([a-z][a-z0-9_.]*)'(?!\s*\+)/g)) if (looksLikeKey(m[1] as string)) keys.push(m[1] as string);
      for (const m of text.matchAll(/'([a-z][a-z0-9_.]*)'\s*\+/g)) {
        const site = TEMPLATE_SITES[name]?.find((s) => s.prefix === m[1]);
        if (!site) unknownSites.push(`${name}: '${m[1]}' + ...`);
        else keys.push(...site.values.map((v) => site.prefix + v));
      }
    }
    expect(unknownSites).toEqual([]);
    expect(keys).toEqual(expect.arrayContaining(['account.notice.last_method', 'scope.email', 'login.continue_with_apple']));
    expect(missingIn(keys)).toEqual([]);
  });
});
