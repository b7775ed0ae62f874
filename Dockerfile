# syntax=docker/dockerfile:1
#
# Tsunagi container image.
#
#   docker build -t tsunagi .
#   docker run -p 3000:3000 \
#     -e ISSUER=https://id.example.com -e DATABASE_URL=postgres://... \
#     -e COOKIE_SECRETS=... -e SMTP_URL=smtp://... -e TSUNAGI_MASTER_KEY="$(openssl rand -base64 32)" tsunagi
#   (keep TSUNAGI_MASTER_KEY: it opens the secrets sealed in the database)
#
# The default command applies pending migrations, then starts the server. Other CLI commands run
# in the same image by replacing the command, e.g.
#   docker run --rm -e DATABASE_URL=... tsunagi node dist/cli/main.js clients list
#
# The image runs the compiled JavaScript in dist/ with plain `node`; it does not use tsx.

ARG NODE_IMAGE=node:24-bookworm-slim

# ---- build: install everything, compile TypeScript, then drop the dev dependencies ----
FROM ${NODE_IMAGE} AS build
WORKDIR /app

COPY package.json package-lock.json ./
# `npm ci` refuses a lock file that lacks entries for optional platform packages (e.g. @swc/core-darwin-*
# when the lock was written against a registry mirror without them). Then fall back to `npm install`,
# accepted only if every package keeps its locked version and the only additions are optional packages.
RUN cp package-lock.json /tmp/package-lock.json \
 && if ! npm ci --no-audit --no-fund; then \
      echo "npm ci rejected package-lock.json; installing the locked versions with npm install" >&2 \
      && npm install --no-audit --no-fund \
      && node -e ' \
        const fs = require("fs"); \
        const [locked, now] = process.argv.slice(1).map((f) => JSON.parse(fs.readFileSync(f, "utf8")).packages); \
        const bad = Object.entries(now).filter(([k, p]) => (locked[k] ? locked[k].version !== p.version : !p.optional)).map(([k]) => k); \
        if (bad.length) { console.error("package-lock.json does not match package.json: " + bad.join(", ")); process.exit(1); }' \
        /tmp/package-lock.json package-lock.json; \
    fi

COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund

# ---- runtime: only what `node dist/main.js` needs ----
FROM ${NODE_IMAGE} AS runtime
WORKDIR /app

ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=3000

# Memory (docs/deploy.md, "Memory"): V8's young generation at most 3 x 16 MB instead of a size taken
# from the host's memory, and two glibc malloc arenas instead of up to eight per core. Measured under
# the bench on Node 24: peak RSS 319 -> 217 MB at the same throughput. `npm run bench` runs Tsunagi
# with these two lines of this file.
ENV NODE_OPTIONS=--max-semi-space-size=16 \
    MALLOC_ARENA_MAX=2

# Application files stay owned by root (read-only for the service user). Only the folder of the
# embedded development database (DATA_DIR, default ./.data) is writable; production uses DATABASE_URL.
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY migrations ./migrations
COPY views ./views
RUN mkdir -p /app/.data && chown node:node /app/.data

# The official Node image ships the unprivileged `node` user (uid 1000).
USER node

EXPOSE 3000

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

# Migrate, then replace the shell with the server so it receives SIGTERM directly (graceful shutdown).
CMD ["sh", "-c", "node dist/cli/main.js migrate && exec node dist/main.js"]
