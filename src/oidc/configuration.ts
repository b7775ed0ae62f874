import type { Configuration, KoaContextWithOIDC, UnknownObject } from 'oidc-provider';
import { errors } from 'oidc-provider';
import type { Account, AccountStore } from '../accounts/account-store.js';
import type { Config } from '../config.js';
import { ACR_VALUES } from '../methods/acr.js';
import { isLocale, negotiateLocale } from '../i18n/index.js';
import type { Views } from '../web/views.js';
import { ADMIN_SCOPES, assertClientRules, EXTRA_CLIENT_METADATA, validateExtraClientMetadata, type ClientPolicy, type TsunagiClientMetadata } from './client-metadata.js';
import type { Adapter } from './adapter/types.js';
import { currentRequestScope } from './adapter/request-scope.js';
import { isHashedSecret, secretIsKeyMaterial } from './client-secrets.js';
import type { LoadedKeys } from './keys.js';
import { cspNonce as newNonce } from '../web/security-headers.js';
import { languageLinks } from '../web/locale.js';
import { ACCOUNT_APP_CLIENT_ID, accountAppClient } from './account-app.js';
import { carryDeviceCodeNonce, deviceFlowFeature } from './device-flow.js';
import { freshLogoutUrl, isStaleProviderForm } from './stale-forms.js';
import type { RateLimiter } from '../limits/rate-limiter.js';
import { outboundFetch } from './outbound-fetch.js';
import { CibaBackchannel } from './ciba.js';
import { pairwiseSubject } from './subject.js';

export interface ProviderDeps {
  config: Config;
  accounts: AccountStore;
  adapterFactory: (model: string) => Adapter;
  keys: LoadedKeys;
  cookieKeys: string[];
  pairwiseSalt: string;
  views: Views;
  findLatestGrantId: (accountId: string, clientId: string) => Promise<string | undefined>;
  /** Counts device-code polls for slow_down (src/oidc/device-flow.ts). */
  limiter: RateLimiter;
  /** OpenID CIBA, poll mode: LINE mini-app method 2 (src/oidc/ciba.ts). */
  ciba: CibaBackchannel;
}

/** Client credentials only: pull the client's incremental export (LINE method 3, src/http/export-routes.ts). */
export const EXPORT_SCOPE = 'tsunagi:export';

/**
 * What a client registered without a `scope` may ask for. The export and Admin API scopes are for
 * clients registered with them only (their endpoints check the registration too).
 */
export const ORDINARY_SCOPES = ['openid', 'offline_access', 'email', 'phone', 'profile'];

export const SCOPES = [...ORDINARY_SCOPES, EXPORT_SCOPE, ...ADMIN_SCOPES];

export const CLAIMS = {
  // acr and amr are released in every ID token: relying parties need to know how the person signed in.
  openid: ['sub', 'acr', 'amr'],
  email: ['email', 'email_verified'],
  phone: ['phone_number', 'phone_number_verified'],
  profile: ['name', 'updated_at'],
  auth_time: null,
};

/** The registration rules of src/oidc/client-metadata.ts as this deployment applies them. */
export function clientPolicyOf(config: Config): ClientPolicy {
  return { production: config.nodeEnv === 'production', reservedClientIds: [ACCOUNT_APP_CLIENT_ID] };
}

const clientExtras = (client: unknown): TsunagiClientMetadata => client as TsunagiClientMetadata;

function localeOf(ctx: KoaContextWithOIDC) {
  // The person's click on a language link outranks the relying party's ui_locales and the old cookie.
  if (typeof ctx.query.lang === 'string' && isLocale(ctx.query.lang)) return ctx.query.lang;
  const params = ctx.oidc?.params as { ui_locales?: string } | undefined;
  return negotiateLocale({
    uiLocales: typeof params?.ui_locales === 'string' ? params.ui_locales : undefined,
    cookie: ctx.cookies.get('tsunagi.locale'),
    acceptLanguage: ctx.get('accept-language'),
  });
}

/**
 * The account, read at most once per request: the query that found the token or session usually
 * read it already (src/oidc/adapter/related-prefetch.ts). Never kept past the request, so a deleted
 * account is gone for the next one.
 */
function accountOfThisRequest(accounts: AccountStore, id: string): Promise<Account | undefined> {
  const scope = currentRequestScope();
  const known = scope?.account(id);
  if (known) return known;
  const reading = accounts.findAccountById(id);
  scope?.rememberAccount(id, reading);
  return reading;
}

/** Plain data for oidc-provider: what is enabled, where things are stored, and the few hooks Tsunagi fills in. */
export function buildProviderConfiguration(deps: ProviderDeps): Configuration {
  const { config, accounts, views } = deps;
  const secureCookies = new URL(config.issuer).protocol === 'https:';

  return {
    adapter: deps.adapterFactory as unknown as Configuration['adapter'],
    // The account page signs people in as Tsunagi's own first-party client.
    clients: [accountAppClient(config.issuer)],
    jwks: deps.keys.jwks as Configuration['jwks'],
    cookies: {
      keys: deps.cookieKeys,
      long: { signed: true, httpOnly: true, sameSite: 'lax', secure: secureCookies },
      short: { signed: true, httpOnly: true, sameSite: 'lax', secure: secureCookies },
    },
    acrValues: ACR_VALUES,
    scopes: SCOPES,
    // Authorization code (with PKCE) only: no implicit or hybrid flows.
    responseTypes: ['code', 'none'],
    claims: CLAIMS,
    // Code flow: the ID token carries the scope's claims too, as relying parties commonly expect.
    conformIdTokenClaims: false,
    subjectTypes: ['public', 'pairwise'],
    async pairwiseIdentifier(_ctx, accountId, client) {
      return pairwiseSubject(client.sectorIdentifier as string | undefined, accountId, deps.pairwiseSalt);
    },
    async findAccount(ctx, sub) {
      const unreachable = deps.ciba.unreachableAccount(ctx, sub);
      if (unreachable) return unreachable;
      const account = await accountOfThisRequest(accounts, sub);
      // A disabled account's tokens stop working at once (userinfo, refresh), whatever is still stored.
      if (!account || account.disabledAt) return undefined;
      return {
        accountId: account.id,
        async claims() {
          return accounts.claimsOf(account) as unknown as { sub: string } & UnknownObject;
        },
      };
    },
    pkce: { required: () => true },
    clientDefaults: {
      grant_types: ['authorization_code'],
      response_types: ['code'],
      id_token_signed_response_alg: 'RS256',
      token_endpoint_auth_method: 'client_secret_basic',
      // oidc-provider lets a client without a registered `scope` ask for any scope: this default keeps
      // the admin scopes for the clients the operator registered with them (clients add --admin).
      scope: ORDINARY_SCOPES.join(' '),
    },
    enabledJWA: {
      idTokenSigningAlgValues: ['RS256', 'ES256', 'EdDSA'],
      userinfoSigningAlgValues: ['RS256', 'ES256', 'EdDSA'],
      introspectionSigningAlgValues: ['RS256', 'ES256', 'EdDSA'],
      authorizationSigningAlgValues: ['RS256', 'ES256', 'EdDSA'],
      requestObjectSigningAlgValues: ['RS256', 'ES256', 'EdDSA', 'PS256'],
      clientAuthSigningAlgValues: ['RS256', 'ES256', 'EdDSA', 'PS256', 'HS256'],
    },
    extraClientMetadata: {
      properties: [...EXTRA_CLIENT_METADATA],
      validator(ctx, key, value, metadata) {
        // Skipping consent is the operator's call: a dynamically registered client cannot claim it.
        if (key === 'first_party' && value === true && ctx?.oidc?.route?.startsWith('registration')) {
          throw new errors.InvalidClientMetadata('first_party cannot be set through dynamic registration');
        }
        validateExtraClientMetadata(key, value, { production: config.nodeEnv === 'production' });
        // Registration and its updates (RFC 7591/7592) keep the rules the CLI keeps, checked once per
        // request. Stored clients are loaded as they are; `clients lint` reports those breaking a rule.
        const route = ctx?.oidc?.route;
        if (key === EXTRA_CLIENT_METADATA[0] && (route === 'registration' || route === 'client_update')) {
          const fields = metadata as unknown as Record<string, unknown>;
          assertClientRules(fields, clientPolicyOf(config));
          // Only an HMAC of this client's secret is kept: it cannot become a signing key afterwards.
          if (isHashedSecret(fields.client_secret) && secretIsKeyMaterial(fields)) {
            throw new errors.InvalidClientMetadata('this client\'s secret is stored hashed and cannot become an HMAC key (client_secret_jwt, HS* algorithms): register a new client for that');
          }
        }
      },
    },
    // CORS for token, userinfo, revocation, introspection comes from the client's own list and nothing else.
    clientBasedCORS(_ctx, origin, client) {
      return (clientExtras(client).allowed_cors_origins ?? []).includes(origin);
    },
    // idp_hint=google|apple: straight to that provider (src/http/interaction-routes.ts).
    extraParams: ['idp_hint'],
    features: {
      devInteractions: { enabled: false },
      // A client may introspect or revoke only what was issued to it.
      introspection: { enabled: true, allowedPolicy: async (_ctx, client, token) => token.clientId === client.clientId },
      revocation: {
        enabled: true,
        async allowedPolicy(_ctx, client, token) {
          if (token.clientId === client.clientId) return true;
          if (client.clientAuthMethod === 'none') return false;
          throw new errors.InvalidRequest('client is not authorized to revoke the presented token');
        },
      },
      clientCredentials: { enabled: true },
      // RFC 8707: a client asks for an access token meant for one of its allowed_resources and gets a
      // JWT whose aud is that resource, so the resource server verifies it against the JWKS alone.
      // Without a resource parameter the token stays opaque and serves userinfo as before.
      resourceIndicators: {
        enabled: true,
        async defaultResource(_ctx, _client, oneOf) {
          return oneOf;
        },
        // The resource granted at authorization carries over to the code exchange and to refreshes
        // that do not name one, so a refreshed token keeps its audience.
        async useGrantedResource() {
          return true;
        },
        async getResourceServerInfo(_ctx, resourceIndicator, client) {
          if (!(clientExtras(client).allowed_resources ?? []).includes(resourceIndicator)) {
            throw new errors.InvalidTarget('this client is not allowed to request an access token for that resource');
          }
          return {
            scope: '',
            audience: resourceIndicator,
            accessTokenFormat: 'jwt',
            accessTokenTTL: config.ttl.accessToken,
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
      userinfo: { enabled: true },
      claimsParameter: { enabled: true },
      backchannelLogout: { enabled: true },
      registration: config.initialAccessToken
        ? { enabled: true, initialAccessToken: config.initialAccessToken }
        : { enabled: false },
      registrationManagement: { enabled: Boolean(config.initialAccessToken), rotateRegistrationAccessToken: true },
      // RFC 8628, with Tsunagi's pages at /device: Google sign-in from inside LINE and other webviews.
      deviceFlow: deviceFlowFeature(views),
      ciba: deps.ciba.feature(),
      rpInitiatedLogout: {
        enabled: true,
        async logoutSource(ctx, form) {
          const locale = localeOf(ctx);
          const nonce = newNonce(ctx);
          ctx.type = 'html';
          ctx.body = views.render('logout', { locale, nonce, languageLinks: languageLinks(ctx) }, {
            form,
            formId: 'op.logoutForm',
            clientName: (ctx.oidc.client?.clientName as string | undefined) ?? ctx.oidc.client?.clientId,
          });
        },
        async postLogoutSuccessSource(ctx) {
          const locale = localeOf(ctx);
          ctx.type = 'html';
          ctx.body = views.render('logged-out', { locale, nonce: newNonce(ctx), languageLinks: languageLinks(ctx) }, {
            clientName: (ctx.oidc.client?.clientName as string | undefined) ?? ctx.oidc.client?.clientId,
          });
        },
      },
    },
    interactions: {
      url: (_ctx, interaction) => `/interaction/${interaction.uid}`,
    },
    // First-party clients are the operator's own apps: their grant is implied, so no consent screen.
    async loadExistingGrant(ctx) {
      const { client, session } = ctx.oidc;
      if (!client || !session?.accountId) return undefined;
      const grantId = (ctx.oidc.result?.consent as { grantId?: string } | undefined)?.grantId
        ?? session.grantIdFor(client.clientId)
        ?? (await deps.findLatestGrantId(session.accountId, client.clientId));
      const existing = grantId ? await ctx.oidc.provider.Grant.find(grantId) : undefined;
      if (!clientExtras(client).first_party) return existing;
      const grant = existing ?? new ctx.oidc.provider.Grant({ clientId: client.clientId, accountId: session.accountId });
      const scope = [...ctx.oidc.requestParamScopes].join(' ');
      if (scope) grant.addOIDCScope(scope);
      const claims = [...ctx.oidc.requestParamClaims];
      if (claims.length) grant.addOIDCClaims(claims);
      await grant.save();
      return grant;
    },
    async expiresWithSession(_ctx, code) {
      carryDeviceCodeNonce(code);
      return !code.scopes.has('offline_access');
    },
    async issueRefreshToken(_ctx, client, code) {
      return client.grantTypeAllowed('refresh_token') && (code.scopes.has('offline_access') || client.clientAuthMethod === 'none' || Boolean(clientExtras(client).first_party));
    },
    ttl: {
      AccessToken: config.ttl.accessToken,
      AuthorizationCode: 60,
      ClientCredentials: config.ttl.accessToken,
      IdToken: config.ttl.idToken,
      Interaction: config.ttl.interaction,
      Session: config.ttl.session,
      Grant: config.ttl.grant,
      RefreshToken(_ctx, token, client) {
        // Public clients get shorter-lived, rotated refresh tokens.
        return client.clientAuthMethod === 'none' ? Math.min(config.ttl.refreshToken, 7 * 86400) : config.ttl.refreshToken;
      },
      DeviceCode: 600,
      BackchannelAuthenticationRequest: CibaBackchannel.requestTtl,
    },
    async renderError(ctx, out, error) {
      const oidcCtx = ctx as unknown as KoaContextWithOIDC;
      if (oidcCtx.oidc?.route === 'end_session_confirm' && isStaleProviderForm(error)) {
        ctx.redirect(freshLogoutUrl(oidcCtx));
        ctx.status = 303;
        return;
      }
      const locale = localeOf(ctx as unknown as KoaContextWithOIDC);
      // Coming back to /auth/<uid> after the sign-in ended is the person's lateness, not the application's fault.
      let messageKey = 'error.oauth';
      if (error instanceof errors.SessionNotFound) {
        const uid = (ctx as unknown as { params?: { uid?: unknown } }).params?.uid;
        const late = typeof uid === 'string' ? await (ctx as unknown as KoaContextWithOIDC).oidc?.provider.Interaction.find(uid, { ignoreExpiration: true }) : undefined;
        messageKey = late?.isExpired ? 'error.interaction_expired' : 'error.session_expired';
      }
      ctx.type = 'html';
      ctx.body = views.render('error', { locale, nonce: newNonce(ctx), languageLinks: languageLinks(ctx) }, {
        messageKey: out.error === 'temporarily_unavailable' ? 'error.unavailable' : messageKey,
        error: out.error,
        description: out.error_description,
        status: (error as { status?: number }).status ?? 400,
      });
    },
    // RFC 9068 auth_time in JWT access tokens for a resource, so a resource server can ask for a
    // recent sign-in (the LINE mini-app backend does before linking accounts).
    async extraTokenClaims(ctx, token) {
      if (token.kind !== 'AccessToken' || !token.resourceServer) return undefined;
      const entities = ctx?.oidc?.entities as { AuthorizationCode?: { authTime?: number }; RefreshToken?: { authTime?: number }; DeviceCode?: { authTime?: number } } | undefined;
      const authTime = entities?.AuthorizationCode?.authTime ?? entities?.RefreshToken?.authTime ?? entities?.DeviceCode?.authTime;
      return typeof authTime === 'number' ? { auth_time: authTime } : undefined;
    },
    // Back-channel logout, sector_identifier_uri, jwks_uri: private addresses only where the operator allows them.
    fetch: outboundFetch(config.outboundAllowPrivate),
    clockTolerance: 5,
    discovery: { ui_locales_supported: ['en', 'ja'] },
  };
}
