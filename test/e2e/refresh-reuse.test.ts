import * as oidc from 'openid-client';
import type { RunningServer } from '../../src/server.js';
import type { SmtpSink } from '../fakes/smtp-sink.js';
import { Browser } from '../support/browserless.js';
import { describeBackends, uniqueEmail } from '../support/harness.js';
import { authorizationRequest, discover, signInWithEmail, startSpaFixture, type SpaFixture } from './support.js';

const REUSE_SECONDS = 30;

interface TokenAnswer { status: number; body: { access_token?: string; refresh_token?: string; error?: string } }

// Two tabs of one SPA refresh with the same rotating token at once (RFC 9700 section 4.14 allows a
// short reuse interval, as Auth0 and Keycloak have). The interval runs on a clock this test sets.
describe(`refresh token reuse interval (${describeBackends()})`, () => {
  let server: RunningServer;
  let sink: SmtpSink;
  let fixture: SpaFixture;
  let issuer: string;
  let redirectUri: string;
  let spaId: string;
  let clockMs = Date.parse('2026-11-29T12:00:00Z');
  const at = (secondsLater: number, from: number) => { clockMs = from + secondsLater * 1000; };

  beforeAll(async () => {
    fixture = await startSpaFixture('SPA with two tabs', { REFRESH_TOKEN_REUSE_SECONDS: String(REUSE_SECONDS) }, { refreshTokenClock: () => new Date(clockMs) });
    ({ server, sink, issuer, redirectUri, spaId } = fixture);
  });

  afterAll(async () => {
    await fixture?.close();
  });

  async function signIn(): Promise<string> {
    const config = await discover(server, spaId, undefined, { token_endpoint_auth_method: 'none' });
    const req = await authorizationRequest(config, redirectUri, { scope: 'openid email' });
    const { callback } = await signInWithEmail(new Browser(), issuer, req.url, redirectUri, uniqueEmail('tabs'), sink);
    const tokens = await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: req.verifier, expectedState: req.state, expectedNonce: req.nonce });
    return tokens.refresh_token as string;
  }

  async function refresh(refreshToken: string): Promise<TokenAnswer> {
    const res = await fetch(`${issuer}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken, client_id: spaId }).toString(),
    });
    return { status: res.status, body: (await res.json()) as TokenAnswer['body'] };
  }

  async function userinfoStatus(accessToken: string): Promise<number> {
    return (await fetch(`${issuer}/me`, { headers: { authorization: `Bearer ${accessToken}` } })).status;
  }

  /** The grant each refresh token belongs to, and whether that grant still exists. */
  async function grantsOf(refreshTokens: string[]): Promise<{ grantIds: Set<string | null>; liveGrants: number }> {
    const { rows } = await server.services.db.pool.query<{ grant_id: string | null }>(
      `SELECT grant_id FROM oidc_payloads WHERE model = 'RefreshToken' AND id = ANY($1::text[])`, [refreshTokens]);
    const grantIds = new Set(rows.map((r) => r.grant_id));
    const live = await server.services.db.pool.query(`SELECT 1 FROM oidc_payloads WHERE model = 'Grant' AND id = ANY($1::text[])`, [[...grantIds]]);
    return { grantIds, liveGrants: live.rowCount ?? 0 };
  }

  it('gives a rotated token used again within the interval working tokens of the same grant', async () => {
    const start = clockMs;
    const first = await signIn();
    const tab1 = await refresh(first);
    expect(tab1.status).toBe(200);

    at(REUSE_SECONDS - 1, start);
    const tab2 = await refresh(first);
    expect(tab2.status).toBe(200);
    expect(tab2.body.refresh_token).toEqual(expect.any(String));
    expect(tab2.body.refresh_token).not.toBe(tab1.body.refresh_token);
    expect(await userinfoStatus(tab2.body.access_token as string)).toBe(200);

    // Both tabs keep going with their own successor, and the grant is untouched.
    const next1 = await refresh(tab1.body.refresh_token as string);
    const next2 = await refresh(tab2.body.refresh_token as string);
    expect([next1.status, next2.status]).toEqual([200, 200]);
    const { grantIds, liveGrants } = await grantsOf([first, tab1.body.refresh_token as string, tab2.body.refresh_token as string]);
    expect(grantIds.size).toBe(1);
    expect(liveGrants).toBe(1);
  });

  it('still treats a reuse after the interval as a replay and revokes the grant, the interval counted from the first use', async () => {
    const start = clockMs;
    const first = await signIn();
    const tab1 = await refresh(first);
    expect(tab1.status).toBe(200);
    // A reuse inside the interval does not move its start.
    at(REUSE_SECONDS - 1, start);
    const tab2 = await refresh(first);
    expect(tab2.status).toBe(200);

    at(REUSE_SECONDS, start);
    const replay = await refresh(first);
    expect(replay.status).toBe(400);
    expect(replay.body.error).toBe('invalid_grant');
    // Everything the grant issued dies with it (RFC 9700 section 4.14), whichever tab held it.
    expect((await refresh(tab1.body.refresh_token as string)).body.error).toBe('invalid_grant');
    expect((await refresh(tab2.body.refresh_token as string)).body.error).toBe('invalid_grant');
    expect(await userinfoStatus(tab2.body.access_token as string)).toBe(401);
  });

  it('gives all 20 parallel uses of one token working tokens, and the grant survives', async () => {
    const first = await signIn();
    const answers = await Promise.all(Array.from({ length: 20 }, () => refresh(first)));
    expect(answers.map((a) => a.status)).toEqual(Array(20).fill(200));
    const successors = answers.map((a) => a.body.refresh_token as string);
    expect(new Set(successors).size).toBe(20);

    // Every tab's new refresh token and access token work.
    const nextRound = await Promise.all(successors.map((token) => refresh(token)));
    expect(nextRound.map((a) => a.status)).toEqual(Array(20).fill(200));
    const userinfo = await Promise.all(answers.map((a) => userinfoStatus(a.body.access_token as string)));
    expect(userinfo).toEqual(Array(20).fill(200));
    const { grantIds, liveGrants } = await grantsOf([first, ...successors]);
    expect(grantIds.size).toBe(1);
    expect(liveGrants).toBe(1);
  });
});
