import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import * as oidc from 'openid-client';
import type { RunningServer } from '../../src/server.js';
import { SmtpSink } from '../fakes/smtp-sink.js';
import { Browser } from '../support/browserless.js';
import { cli } from '../support/cli.js';
import { describeBackends, startTestServer, uniqueEmail } from '../support/harness.js';
import { authorizationRequest, discover, signInWithEmail } from './support.js';



describe(`operating Tsunagi (${describeBackends()})`, () => {
  let server: RunningServer;
  let sink: SmtpSink;
  let dataDir: string;
  let env: Record<string, string | undefined>;

  beforeAll(async () => {
    sink = new SmtpSink();
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsunagi-ops-'));
    // A data folder (not memory) so the CLI can reach the embedded database the server is serving.
    env = { SMTP_URL: await sink.start(), DATA_DIR: dataDir, INITIAL_ACCESS_TOKEN: 'x'.repeat(40) };
    server = await startTestServer(env);
    env = { ...env, DATABASE_URL: process.env.DATABASE_URL, ISSUER: server.services.config.issuer };
  });

  afterAll(async () => {
    await server?.close();
    await sink?.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('registers a client with the CLI while the server runs, and that client completes a login', async () => {
    const redirectUri = 'http://127.0.0.1:9/callback';
    const added = await cli(['clients', 'add', '-'], env, JSON.stringify({ client_name: 'CLI app', redirect_uris: [redirectUri], first_party: true }));
    expect(added.code).toBe(0);
    const { client_id: clientId, client_secret: clientSecret } = JSON.parse(added.stdout) as { client_id: string; client_secret: string };
    expect(clientSecret.length).toBeGreaterThan(30);
    expect(added.stderr).toContain('shown only now');

    const listed = await cli(['clients', 'list'], env);
    expect(JSON.parse(listed.stdout)).toEqual(expect.arrayContaining([expect.objectContaining({ client_id: clientId, client_name: 'CLI app', first_party: true })]));
    const shown = await cli(['clients', 'show', clientId], env);
    expect(JSON.parse(shown.stdout).client_secret).toBe('********');

    const config = await discover(server, clientId, clientSecret);
    const req = await authorizationRequest(config, redirectUri);
    const { callback } = await signInWithEmail(new Browser(), server.services.config.issuer, req.url, redirectUri, uniqueEmail('cli'), sink);
    const tokens = await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: req.verifier, expectedState: req.state, expectedNonce: req.nonce });
    expect(tokens.claims()?.aud).toBe(clientId);

    // Rotating the secret makes the old one useless.
    const rotated = await cli(['clients', 'rotate-secret', clientId], env);
    const newSecret = (JSON.parse(rotated.stdout) as { client_secret: string }).client_secret;
    expect(newSecret).not.toBe(clientSecret);
    const tokenWith = async (secret: string) => {
      const res = await fetch(`${server.services.config.issuer}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(secret)}`).toString('base64')}` },
        body: 'grant_type=client_credentials',
      });
      return { status: res.status, error: ((await res.json()) as { error: string }).error };
    };
    expect(await tokenWith(clientSecret)).toEqual({ status: 401, error: 'invalid_client' });
    // The new secret authenticates (the grant type itself is not registered for this client).
    const withNew = await tokenWith(newSecret);
    expect(withNew.status).toBe(400);
    expect(withNew.error).not.toBe('invalid_client');

    const removed = await cli(['clients', 'remove', clientId], env);
    expect(removed.code).toBe(0);
    const gone = await cli(['clients', 'show', clientId], env);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain(`no client with id ${clientId}`);
  }, 120_000);

  it('refuses invalid client metadata with the reason and stores nothing', async () => {
    // Other test files add clients to a shared database at the same time: look for this one by name.
    const marker = `invalid-${Date.now()}-${Math.random().toString(36).slice(2)}`;
    const bad = await cli(['clients', 'add', '-'], env, JSON.stringify({ client_name: marker, redirect_uris: ['not a url'] }));
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/redirect_uris/);
    const notJson = await cli(['clients', 'add', '-'], env, '{nope');
    expect(notJson.code).toBe(64);
    expect(notJson.stderr).toContain('is not a JSON object');
    expect((await server.services.clients.list()).filter((c) => c.clientName === marker)).toEqual([]);
  }, 60_000);

  it('rotates keys: the next key was published before it signs, the old key still verifies old tokens', async () => {
    const { services } = server;
    const jwksUrl = new URL(`${services.config.issuer}/jwks`);
    const published = async () => ((await (await fetch(jwksUrl)).json()) as { keys: Array<{ kid: string; alg: string; d?: string }> }).keys;
    const keysBefore = await services.keys.list();
    const currentRs = keysBefore.find((k) => k.alg === 'RS256' && k.state === 'current');
    const nextRs = keysBefore.find((k) => k.alg === 'RS256' && k.state === 'next');
    const listedBefore = await published();
    expect(listedBefore.map((k) => k.kid)).toEqual(expect.arrayContaining([currentRs?.kid, nextRs?.kid]));
    expect(listedBefore.every((k) => k.d === undefined)).toBe(true);
    expect(new Set(listedBefore.map((k) => k.alg))).toEqual(new Set(['RS256', 'ES256', 'EdDSA']));

    const added = await services.clients.add({ grant_types: ['client_credentials'], redirect_uris: [], response_types: [], first_party: true });
    const redirectUri = 'http://127.0.0.1:9/cb';
    const web = await services.clients.add({ redirect_uris: [redirectUri], first_party: true });
    const config = await discover(server, web.client_id as string, web.client_secret as string);
    const signIn = async () => {
      const req = await authorizationRequest(config, redirectUri);
      const { callback } = await signInWithEmail(new Browser(), services.config.issuer, req.url, redirectUri, uniqueEmail('rot'), sink);
      return oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: req.verifier, expectedState: req.state, expectedNonce: req.nonce });
    };
    const oldToken = (await signIn()).id_token as string;
    expect(decodeProtectedHeader(oldToken).kid).toBe(currentRs?.kid);

    const rotated = await cli(['keys', 'rotate'], env);
    expect(rotated.code).toBe(0);
    expect(await services.host.reloadIfKeysChanged()).toBe(true);

    const newToken = (await signIn()).id_token as string;
    expect(decodeProtectedHeader(newToken).kid).toBe(nextRs?.kid);
    const jwks = createRemoteJWKSet(jwksUrl, { cacheMaxAge: 0 });
    await expect(jwtVerify(oldToken, jwks, { issuer: services.config.issuer })).resolves.toBeDefined();
    await expect(jwtVerify(newToken, jwks, { issuer: services.config.issuer })).resolves.toBeDefined();
    const after = await services.keys.list();
    expect(after.find((k) => k.kid === currentRs?.kid)?.state).toBe('retired');
    expect(after.filter((k) => k.alg === 'RS256' && k.state === 'next')).toHaveLength(1);
    const audit = await services.accounts.listAuditEvents({ type: 'key_rotation', limit: 1 });
    expect(audit[0]?.data.promoted).toEqual(expect.arrayContaining([nextRs?.kid]));
    expect(added.client_id).toBeDefined();
  }, 120_000);

  it('offers dynamic client registration only with the initial access token', async () => {
    const issuer = server.services.config.issuer;
    const body = JSON.stringify({ redirect_uris: ['https://app.example.test/cb'], client_name: 'Dynamic' });
    const denied = await fetch(`${issuer}/reg`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    expect(denied.status).toBe(401);
    const ok = await fetch(`${issuer}/reg`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${'x'.repeat(40)}` }, body });
    expect(ok.status).toBe(201);
    const client = (await ok.json()) as { client_id: string };
    expect((await server.services.clients.list()).find((c) => c.clientId === client.client_id)?.source).toBe('dynamic');
    const firstParty = await fetch(`${issuer}/reg`, {
      method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${'x'.repeat(40)}` },
      body: JSON.stringify({ redirect_uris: ['https://app.example.test/cb'], first_party: true }),
    });
    expect(firstParty.status).toBe(400);
    expect(((await firstParty.json()) as { error_description: string }).error_description).toContain('first_party');
  });

  it('reports health, readiness and Prometheus metrics', async () => {
    const issuer = server.services.config.issuer;
    expect((await fetch(`${issuer}/healthz`)).status).toBe(200);
    const ready = await fetch(`${issuer}/readyz`);
    expect(ready.status).toBe(200);
    expect(((await ready.json()) as { checks: Record<string, string> }).checks.database).toBe('ok');
    const metrics = await (await fetch(`${issuer}/metrics`)).text();
    expect(metrics).toMatch(/tsunagi_http_requests_total\{route="discovery"|tsunagi_http_requests_total\{route="\/healthz"/);
    expect(metrics).toMatch(/tsunagi_sign_ins_total\{method="email_otp"\} \d+/);
    expect(metrics).toMatch(/tsunagi_otp_sends_total\{channel="email",result="sent"\} \d+/);
  });
});

describe('Tsunagi without registration configured', () => {
  it('has no registration endpoint when INITIAL_ACCESS_TOKEN is not set', async () => {
    const server = await startTestServer();
    try {
      const discovery = (await (await fetch(`${server.services.config.issuer}/.well-known/openid-configuration`)).json()) as Record<string, unknown>;
      expect(discovery.registration_endpoint).toBeUndefined();
      expect((await fetch(`${server.services.config.issuer}/reg`, { method: 'POST' })).status).toBe(404);
    } finally {
      await server.close();
    }
  });
});
