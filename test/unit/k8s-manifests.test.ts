import fs from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { loadConfig } from '../../src/config.js';

// deploy/k8s/*.yaml, checked offline: they parse, and they hold what a deployment of Tsunagi needs
// (probes on the right paths and port, non-root, limits, the migration Job, the image's commands).

const root = new URL('../..', import.meta.url).pathname;
const dir = path.join(root, 'deploy/k8s');

interface Manifest { apiVersion: string; kind: string; metadata: { name: string }; spec?: Record<string, unknown>; [key: string]: unknown }
interface Probe { httpGet?: { path: string; port: string | number } }
interface Container {
  name: string; image: string; command?: string[];
  ports?: Array<{ name?: string; containerPort: number }>;
  env?: Array<{ name: string; value?: string }>;
  envFrom?: Array<{ configMapRef?: { name: string }; secretRef?: { name: string } }>;
  livenessProbe?: Probe; readinessProbe?: Probe; startupProbe?: Probe;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: { allowPrivilegeEscalation?: boolean; readOnlyRootFilesystem?: boolean; runAsNonRoot?: boolean };
}
interface PodSpec { securityContext?: { runAsNonRoot?: boolean; runAsUser?: number }; containers: Container[]; restartPolicy?: string; terminationGracePeriodSeconds?: number }

function load(): Manifest[] {
  const docs: Manifest[] = [];
  for (const file of fs.readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort()) {
    for (const doc of parseAllDocuments(fs.readFileSync(path.join(dir, file), 'utf8'))) {
      if (doc.errors.length) throw new Error(`${file}: ${doc.errors.map((e) => e.message).join('; ')}`);
      const value = doc.toJS() as Manifest | null;
      if (value) docs.push(value);
    }
  }
  return docs;
}

const manifests = load();
const one = (kind: string): Manifest => {
  const found = manifests.filter((m) => m.kind === kind);
  expect(found).toHaveLength(1);
  return found[0] as Manifest;
};
const podOf = (m: Manifest): PodSpec => (m.spec as { template: { spec: PodSpec } }).template.spec;
const dockerfile = fs.readFileSync(path.join(root, 'Dockerfile'), 'utf8');
const configMapData = (): Record<string, string> => (one('ConfigMap') as unknown as { data: Record<string, string> }).data;

/** The image's default command, as the shell line it runs. */
function dockerCommand(): string {
  const cmd = /^CMD\s+(\[.*\])\s*$/m.exec(dockerfile)?.[1];
  if (!cmd) throw new Error('the Dockerfile has no CMD in exec form');
  const argv = JSON.parse(cmd) as string[];
  return argv[0] === 'sh' && argv[1] === '-c' ? argv[2] as string : argv.join(' ');
}

describe('Kubernetes manifests (deploy/k8s)', () => {
  it('parse, and hold each kind a deployment needs once', () => {
    expect(manifests.map((m) => m.kind).sort()).toEqual(
      ['ConfigMap', 'Deployment', 'HorizontalPodAutoscaler', 'Job', 'Kustomization', 'PodDisruptionBudget', 'Secret', 'Service'].sort());
    const kustomization = one('Kustomization') as unknown as { resources: string[] };
    const files = fs.readdirSync(dir).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml').sort();
    expect([...kustomization.resources].sort()).toEqual(files);
  });

  it('probe liveness on /healthz and readiness on /readyz, on the port the server listens on', () => {
    const pod = podOf(one('Deployment'));
    const [container] = pod.containers;
    const port = container?.ports?.find((p) => p.name === 'http');
    expect(port?.containerPort).toBe(Number(container?.env?.find((e) => e.name === 'PORT')?.value));
    expect(dockerfile).toMatch(new RegExp(`^EXPOSE ${port?.containerPort}$`, 'm'));
    expect(container?.env?.find((e) => e.name === 'HOST')?.value).toBe('0.0.0.0');
    for (const probe of [container?.livenessProbe, container?.startupProbe]) expect(probe?.httpGet).toEqual({ path: '/healthz', port: 'http' });
    expect(container?.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: 'http' });
  });

  it('run every container as a non-root user without privilege escalation, with resource requests and limits', () => {
    for (const workload of [one('Deployment'), one('Job')]) {
      const pod = podOf(workload);
      expect(pod.securityContext?.runAsNonRoot).toBe(true);
      expect(pod.securityContext?.runAsUser).toBeGreaterThan(0);
      for (const c of pod.containers) {
        expect(c.securityContext?.allowPrivilegeEscalation).toBe(false);
        expect(c.resources?.requests?.cpu).toBeDefined();
        expect(c.resources?.requests?.memory).toBeDefined();
        expect(c.resources?.limits?.cpu).toBeDefined();
        expect(c.resources?.limits?.memory).toBeDefined();
        expect(c.envFrom).toEqual(expect.arrayContaining([{ configMapRef: { name: 'tsunagi' } }, { secretRef: { name: 'tsunagi' } }]));
      }
    }
    // The image's user is the unprivileged one the pods run as.
    expect(dockerfile).toMatch(/^USER node$/m);
  });

  it('run the image\'s own commands: the server in the Deployment, migrations in the Job, which the server leaves to it', () => {
    const command = dockerCommand();
    const server = podOf(one('Deployment')).containers[0]?.command?.join(' ');
    const job = podOf(one('Job'));
    const migrate = job.containers[0]?.command?.join(' ');
    expect(migrate).toBe('node dist/cli/main.js migrate');
    expect(server).toBe('node dist/main.js');
    expect(command).toBe(`${migrate} && exec ${server}`);
    expect(job.restartPolicy).toBe('Never');
    expect(configMapData().MIGRATE_ON_START).toBe('false');
  });

  it('drain within the grace period, keep all but one pod through a voluntary disruption, and scale on CPU', () => {
    const pod = podOf(one('Deployment'));
    expect(Number(configMapData().SHUTDOWN_DRAIN_SECONDS)).toBeLessThan(pod.terminationGracePeriodSeconds as number);
    const labels = (one('Deployment').spec as { selector: { matchLabels: Record<string, string> } }).selector.matchLabels;
    const pdb = one('PodDisruptionBudget').spec as { maxUnavailable?: number; minAvailable?: number; selector: { matchLabels: Record<string, string> } };
    expect(pdb.selector.matchLabels).toEqual(labels);
    expect(pdb.maxUnavailable).toBe(1);
    expect((one('Service').spec as { selector: Record<string, string> }).selector).toEqual(labels);
    const hpa = one('HorizontalPodAutoscaler').spec as { scaleTargetRef: { kind: string; name: string }; minReplicas: number; maxReplicas: number };
    expect(hpa.scaleTargetRef).toMatchObject({ kind: 'Deployment', name: one('Deployment').metadata.name });
    expect(hpa.minReplicas).toBeGreaterThanOrEqual(2);
    expect(hpa.maxReplicas).toBeGreaterThan(hpa.minReplicas);
  });

  it('keep the Secret a template with no real secret in it', () => {
    const data = (one('Secret') as unknown as { stringData: Record<string, string>; data?: unknown }).stringData;
    expect((one('Secret') as unknown as { data?: unknown }).data).toBeUndefined();
    expect(Object.keys(data)).toEqual(expect.arrayContaining(['TSUNAGI_MASTER_KEY', 'COOKIE_SECRETS', 'DATABASE_URL', 'DATABASE_DIRECT_URL', 'SMTP_URL']));
    for (const [name, value] of Object.entries(data)) expect(`${name}=${value}`).toMatch(/REPLACE_ME/);
  });

  it('configure a production node Tsunagi accepts (once the Secret is filled in)', () => {
    const env: Record<string, string> = { ...configMapData(), HOST: '0.0.0.0', PORT: '3000' };
    const secret = (one('Secret') as unknown as { stringData: Record<string, string> }).stringData;
    for (const [name, value] of Object.entries(secret)) {
      env[name] = name === 'TSUNAGI_MASTER_KEY' ? Buffer.alloc(32, 7).toString('base64')
        : name === 'COOKIE_SECRETS' || name === 'METRICS_TOKEN' ? 'x'.repeat(40)
        : value.replaceAll('REPLACE_ME', 'secret');
    }
    const config = loadConfig(env);
    expect(config).toMatchObject({ nodeEnv: 'production', migrateOnStart: false, databaseDirectUrl: expect.stringContaining(':5432/') });
  });

  it('build the image in stages on Node 24', () => {
    expect(dockerfile.match(/^FROM /gm)?.length).toBeGreaterThanOrEqual(2);
    expect(dockerfile).toMatch(/^ARG NODE_IMAGE=node:24[-\w.]*$/m);
    expect(dockerfile).toMatch(/^FROM \$\{NODE_IMAGE\} AS runtime$/m);
  });
});
