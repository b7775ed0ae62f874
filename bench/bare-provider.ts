// The ceiling: oidc-provider with nothing of Tsunagi around it, run as its own process by bench/run.ts.
// Same clients, the same signing keys per algorithm (RS256, ES256, EdDSA; a current key that signs and
// a next key that only verifies, as Tsunagi publishes), the same features and token lifetimes, an
// in-memory adapter, one fixed account and an interaction that signs that account in at once.
//
// env: PORT, BENCH_CLIENTS (JSON array of client metadata)
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import http from 'node:http';
import { errors, Provider, type Adapter, type AdapterPayload, type Configuration } from 'oidc-provider';

const port = Number(process.env.PORT ?? 0);
const issuer = `http://127.0.0.1:${port}`;
const clients = JSON.parse(process.env.BENCH_CLIENTS ?? '[]') as Configuration['clients'];
const ACCOUNT_ID = 'bench-user';

// oidc-provider's own MemoryAdapter is an LRU of 1000 entries: under load the refresh token and grant
// would be evicted by the flood of access tokens. This one keeps everything until it expires.
const store = new Map<string, { payload: AdapterPayload; expiresAt: number | undefined }>();
const grantKeys = new Map<string, Set<string>>();
const now = () => Date.now();

class InMemoryAdapter implements Adapter {
  constructor(private readonly model: string) {}
  private key(id: string) { return `${this.model}:${id}`; }

  async upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void> {
    const key = this.key(id);
    store.set(key, { payload, expiresAt: expiresIn ? now() + expiresIn * 1000 : undefined });
    if (payload.grantId) {
      let keys = grantKeys.get(payload.grantId);
      if (!keys) grantKeys.set(payload.grantId, (keys = new Set()));
      keys.add(key);
    }
    if (payload.uid) store.set(`${this.model}:uid:${payload.uid}`, { payload: { id } as AdapterPayload, expiresAt: expiresIn ? now() + expiresIn * 1000 : undefined });
    if (payload.userCode) store.set(`${this.model}:userCode:${payload.userCode}`, { payload: { id } as AdapterPayload, expiresAt: expiresIn ? now() + expiresIn * 1000 : undefined });
  }

  async find(id: string): Promise<AdapterPayload | undefined> { return this.get(this.key(id)); }

  async findByUid(uid: string): Promise<AdapterPayload | undefined> {
    const ref = this.get(`${this.model}:uid:${uid}`);
    return ref?.id ? this.find(String(ref.id)) : undefined;
  }

  async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
    const ref = this.get(`${this.model}:userCode:${userCode}`);
    return ref?.id ? this.find(String(ref.id)) : undefined;
  }

  async consume(id: string): Promise<void> {
    const entry = store.get(this.key(id));
    if (entry) entry.payload.consumed = Math.floor(now() / 1000);
  }

  async destroy(id: string): Promise<void> { store.delete(this.key(id)); }

  async revokeByGrantId(grantId: string): Promise<void> {
    for (const key of grantKeys.get(grantId) ?? []) store.delete(key);
    grantKeys.delete(grantId);
  }

  private get(key: string): AdapterPayload | undefined {
    const entry = store.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt !== undefined && entry.expiresAt < now()) {
      store.delete(key);
      return undefined;
    }
    return entry.payload;
  }
}

function jwk(alg: 'RS256' | 'ES256' | 'EdDSA', verifyOnly: boolean) {
  const pair = alg === 'RS256'
    ? generateKeyPairSync('rsa', { modulusLength: 2048 })
    : alg === 'ES256' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('ed25519');
  return { ...pair.privateKey.export({ format: 'jwk' }), kid: randomBytes(12).toString('base64url'), alg, use: 'sig', ...(verifyOnly ? { key_ops: ['verify'] } : {}) };
}
const algs = ['RS256', 'ES256', 'EdDSA'] as const;
const keys = [...algs.map((a) => jwk(a, false)), ...algs.map((a) => jwk(a, true))];

type FirstParty = { first_party?: boolean };
type AllowedResources = { allowed_resources?: string[] };
const configuration: Configuration = {
  adapter: InMemoryAdapter,
  clients,
  jwks: { keys } as Configuration['jwks'],
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  acrValues: ['urn:tsunagi:loa:1', 'phr'],
  scopes: ['openid', 'offline_access', 'email', 'phone', 'profile'],
  responseTypes: ['code', 'none'],
  claims: {
    openid: ['sub', 'acr', 'amr'],
    email: ['email', 'email_verified'],
    phone: ['phone_number', 'phone_number_verified'],
    profile: ['name', 'updated_at'],
    auth_time: null,
  },
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  clientDefaults: {
    grant_types: ['authorization_code'],
    response_types: ['code'],
    id_token_signed_response_alg: 'RS256',
    token_endpoint_auth_method: 'client_secret_basic',
  },
  enabledJWA: {
    idTokenSigningAlgValues: ['RS256', 'ES256', 'EdDSA'],
    userinfoSigningAlgValues: ['RS256', 'ES256', 'EdDSA'],
    introspectionSigningAlgValues: ['RS256', 'ES256', 'EdDSA'],
  },
  extraClientMetadata: { properties: ['first_party', 'require_email', 'allowed_cors_origins', 'allowed_resources'] },
  async findAccount(_ctx, sub) {
    if (sub !== ACCOUNT_ID) return undefined;
    return {
      accountId: sub,
      async claims() { return { sub, email: 'bench@example.test', email_verified: true, updated_at: 1_700_000_000 }; },
    };
  },
  features: {
    devInteractions: { enabled: false },
    introspection: { enabled: true, allowedPolicy: async (_ctx, client, token) => token.clientId === client.clientId },
    revocation: { enabled: true },
    clientCredentials: { enabled: true },
    userinfo: { enabled: true },
    // As Tsunagi (src/oidc/configuration.ts): RS256 JWT access tokens for a client's allowed_resources.
    resourceIndicators: {
      enabled: true,
      async defaultResource(_ctx, _client, oneOf) { return oneOf; },
      async useGrantedResource() { return true; },
      async getResourceServerInfo(_ctx, resourceIndicator, client) {
        if (!((client as unknown as AllowedResources).allowed_resources ?? []).includes(resourceIndicator)) {
          throw new errors.InvalidTarget('this client is not allowed to request an access token for that resource');
        }
        return { scope: '', audience: resourceIndicator, accessTokenFormat: 'jwt', accessTokenTTL: 3600, jwt: { sign: { alg: 'RS256' } } };
      },
    },
  },
  async extraTokenClaims(ctx, token) {
    if (token.kind !== 'AccessToken' || !token.resourceServer) return undefined;
    const entities = ctx?.oidc?.entities as { AuthorizationCode?: { authTime?: number }; RefreshToken?: { authTime?: number } } | undefined;
    const authTime = entities?.AuthorizationCode?.authTime ?? entities?.RefreshToken?.authTime;
    return typeof authTime === 'number' ? { auth_time: authTime } : undefined;
  },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  // As Tsunagi: first-party clients get a refresh token without asking for offline_access.
  async issueRefreshToken(_ctx, client, code) {
    return client.grantTypeAllowed('refresh_token') && (code.scopes.has('offline_access') || client.clientAuthMethod === 'none' || Boolean((client as unknown as FirstParty).first_party));
  },
  ttl: {
    AccessToken: 3600,
    AuthorizationCode: 60,
    ClientCredentials: 3600,
    IdToken: 3600,
    Interaction: 3600,
    Session: 14 * 86400,
    Grant: 365 * 86400,
    RefreshToken: 14 * 86400,
  },
  clockTolerance: 5,
};

const provider = new Provider(issuer, configuration);
const callback = provider.callback();

// The interaction: sign the one account in and grant what was asked, without a page.
async function interaction(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const details = await provider.interactionDetails(req, res);
  if (details.prompt.name === 'login') {
    await provider.interactionFinished(req, res, { login: { accountId: ACCOUNT_ID, amr: ['otp'], acr: 'urn:tsunagi:loa:1' } }, { mergeWithLastSubmission: false });
    return;
  }
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: ACCOUNT_ID, clientId: String(details.params.client_id) });
  if (!grant) throw new Error('grant vanished');
  const missing = details.prompt.details as { missingOIDCScope?: string[]; missingOIDCClaims?: string[] };
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

const server = http.createServer((req, res) => {
  if (req.url?.startsWith('/interaction/')) {
    interaction(req, res).catch((err: unknown) => {
      res.writeHead(500, { 'content-type': 'text/plain' }).end(String(err));
    });
    return;
  }
  if (req.url === '/healthz') {
    res.writeHead(200).end('ok');
    return;
  }
  void callback(req, res);
});
server.keepAliveTimeout = 65_000;
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`bare oidc-provider listening on ${issuer}\n`);
});
process.once('SIGTERM', () => { server.close(() => process.exit(0)); server.closeIdleConnections(); setTimeout(() => process.exit(0), 3000).unref(); });
