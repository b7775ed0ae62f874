// Runs BENCH_WORKERS (default 2) Tsunagi processes on one port with node:cluster, for the scaling
// measurement. Each worker is an ordinary compiled `dist/main.js` (BENCH_ENTRY, as the Dockerfile
// runs it); the primary only hands out connections. Compiled to dist/bench/ (tsconfig.bench.json).
// Prints `WORKERS pid,pid` once every worker listens. SIGTERM stops the workers, then the primary.
import cluster from 'node:cluster';
import { pathToFileURL } from 'node:url';

const workers = Number(process.env.BENCH_WORKERS ?? 2);

if (cluster.isPrimary) {
  let listening = 0;
  let stopping = false;
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on('listening', () => {
    listening++;
    if (listening === workers) {
      process.stdout.write(`WORKERS ${Object.values(cluster.workers ?? {}).map((w) => w?.process.pid).join(',')}\n`);
    }
  });
  cluster.on('exit', (worker, code, signal) => {
    if (!stopping) {
      process.stderr.write(`worker ${worker.process.pid} exited (${signal ?? code}); stopping\n`);
      process.exit(1);
    }
  });
  process.once('SIGTERM', () => {
    stopping = true;
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
    const check = setInterval(() => {
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
    }, 100);
    setTimeout(() => { clearInterval(check); process.exit(0); }, 10_000).unref();
  });
} else {
  // A path from the environment, not a static import: the compiled bench must not pull src/ into dist/bench.
  const entry = process.env.BENCH_ENTRY;
  if (!entry) throw new Error('BENCH_ENTRY (the compiled dist/main.js) is not set');
  await import(pathToFileURL(entry).href);
}
