import fs from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

// Imports in src/ point one way: entry points → composition root → http → flows → (oidc, methods,
// upstream) → accounts → db, with a few leaves that anyone may use. An import that runs back up
// (oidc reaching into http for a CSP nonce, delivery into methods for a type) is how a layered
// codebase turns into a tangle one convenient line at a time, so this test is the CI check.
// It reads the same graph as `python3 ../shared/tools/import-graph.py src --values-only`: relative
// imports and re-exports that bring in values (type-only ones erase at build time), folder to folder,
// where a file directly in src/ (config.ts, services.ts, ...) is a folder of its own.

/** Anyone may import these; a leaf itself imports only the leaves listed for it. */
const LEAVES: Record<string, readonly string[]> = {
  config: ['secrets'], // the master key is parsed once, where the rest of the configuration is
  logger: [],
  i18n: [],
  failures: [], // DependencyUnavailable, deadlines, MalformedRequest: errors every layer may raise
  secrets: [], // the master keyring that seals secrets at rest
  limits: [],
  delivery: ['i18n', 'failures'],
};

/** What each folder may import besides the leaves, top to bottom. */
const LAYERS: Record<string, readonly string[]> = {
  main: ['server', 'db'],
  cli: ['services', 'flows', 'oidc', 'upstream', 'accounts', 'db'],
  server: ['app', 'services', 'web', 'oidc', 'accounts', 'db'],
  app: ['http', 'web', 'oidc'],
  /** The composition root: builds stores, methods, flows and the provider; knows no route. */
  services: ['web', 'flows', 'oidc', 'methods', 'upstream', 'accounts', 'db'],
  http: ['web', 'flows', 'oidc', 'methods', 'upstream', 'accounts'],
  /** Shared web pieces (views, CSP nonce, locale, metrics, readiness), for http/ and oidc-provider's own pages. */
  web: [],
  flows: ['oidc', 'methods', 'upstream', 'accounts', 'db'],
  oidc: ['web', 'methods', 'accounts', 'db'],
  methods: ['accounts'],
  upstream: ['accounts'],
  accounts: ['db'],
  db: [],
};

/**
 * Known edges that break the direction, each with the change that removes it. The test fails when
 * one is no longer there, so the list cannot outlive its reason.
 */
const KNOWN_EXCEPTIONS: ReadonlyArray<{ file: string; imports: string; until: string }> = [
];

const SRC = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../src');

interface Edge { file: string; imports: string; from: string; to: string; line: number; text: string }

function tsFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return tsFiles(p);
    return e.name.endsWith('.ts') ? [p] : [];
  });
}

/** The folder a path under src/ belongs to: its first segment, or its own name for a file directly in src/. */
function folderOf(relative: string): string {
  const [first, ...rest] = relative.split('/');
  return rest.length ? (first as string) : (first as string).replace(/\.ts$/, '');
}

/** Relative specifiers this file imports values from (type-only imports and re-exports are left out). */
function valueImports(source: ts.SourceFile): Array<{ specifier: string; node: ts.Node }> {
  const found: Array<{ specifier: string; node: ts.Node }> = [];
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      const clause = node.importClause;
      const bindings = clause?.namedBindings;
      const onlyTypes = clause !== undefined && (clause.isTypeOnly
        || (!clause.name && bindings !== undefined && ts.isNamedImports(bindings) && bindings.elements.length > 0 && bindings.elements.every((e) => e.isTypeOnly)));
      if (!onlyTypes) found.push({ specifier: node.moduleSpecifier.text, node });
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      const clause = node.exportClause;
      const onlyTypes = node.isTypeOnly || (clause !== undefined && ts.isNamedExports(clause) && clause.elements.every((e) => e.isTypeOnly));
      if (!onlyTypes) found.push({ specifier: node.moduleSpecifier.text, node });
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const [arg] = node.arguments;
      if (arg && ts.isStringLiteral(arg)) found.push({ specifier: arg.text, node });
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found.filter((f) => f.specifier.startsWith('.'));
}

function crossFolderEdges(): Edge[] {
  return tsFiles(SRC).flatMap((abs) => {
    const file = path.relative(SRC, abs).split(path.sep).join('/');
    const source = ts.createSourceFile(abs, fs.readFileSync(abs, 'utf8'), ts.ScriptTarget.Latest, true);
    return valueImports(source).flatMap(({ specifier, node }) => {
      const target = path.relative(SRC, path.resolve(path.dirname(abs), specifier)).split(path.sep).join('/').replace(/\.js$/, '.ts');
      const from = folderOf(file);
      const to = folderOf(target);
      if (from === to) return [];
      const line = source.getLineAndCharacterOfPosition(node.getStart()).line + 1;
      return [{ file, imports: target, from, to, line, text: node.getText().split('\n')[0] as string }];
    });
  });
}

const allowed = (from: string, to: string): boolean => {
  if (from in LEAVES) return (LEAVES[from] as readonly string[]).includes(to);
  return to in LEAVES || (LAYERS[from] ?? []).includes(to);
};

const edges = crossFolderEdges();
const isKnown = (e: Edge) => KNOWN_EXCEPTIONS.some((k) => k.file === e.file && k.imports === e.imports);

describe('import direction of src/', () => {
  it('reads the import graph (the test would pass vacuously on an empty one)', () => {
    expect(edges.length).toBeGreaterThan(50);
    expect(edges).toContainEqual(expect.objectContaining({ file: 'app.ts', from: 'app', to: 'http' }));
  });

  it('places every folder of src/ in a layer or among the leaves', () => {
    const folders = new Set(tsFiles(SRC).map((f) => folderOf(path.relative(SRC, f).split(path.sep).join('/'))));
    const unplaced = [...folders].filter((f) => !(f in LAYERS) && !(f in LEAVES));
    expect(unplaced).toEqual([]);
  });

  it('has no cycle in the allowed layering itself', () => {
    const next = (f: string): readonly string[] => [...(LAYERS[f] ?? []), ...(LEAVES[f] ?? (f in LAYERS ? Object.keys(LEAVES) : []))];
    const cycles: string[] = [];
    const walk = (f: string, trail: string[]): void => {
      if (trail.includes(f)) { cycles.push([...trail, f].join(' → ')); return; }
      for (const n of next(f)) walk(n, [...trail, f]);
    };
    for (const f of [...Object.keys(LAYERS), ...Object.keys(LEAVES)]) walk(f, []);
    expect(cycles).toEqual([]);
  });

  it('has no import that runs back up (or sideways into a folder not listed as allowed)', () => {
    const wrong = edges.filter((e) => !allowed(e.from, e.to) && !isKnown(e))
      .map((e) => `${e.from} → ${e.to}: src/${e.file}:${e.line} ${e.text}`);
    expect(wrong).toEqual([]);
  });

  it('lists only exceptions that still exist (delete one once its reason is gone)', () => {
    const stale = KNOWN_EXCEPTIONS.filter((k) => !edges.some((e) => e.file === k.file && e.imports === k.imports));
    expect(stale).toEqual([]);
  });
});
