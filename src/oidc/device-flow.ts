import { createHash } from 'node:crypto';
import type { Context, Next } from 'koa';
import type { Configuration, KoaContextWithOIDC } from 'oidc-provider';
import { MalformedRequest } from '../failures/malformed-input.js';
import { negotiateLocale, isLocale, type Locale } from '../i18n/index.js';
import type { Views } from '../web/views.js';
import { cspNonce } from '../web/security-headers.js';
import { languageLinks } from '../web/locale.js';
import type { RateLimiter } from '../limits/rate-limiter.js';
import { isStaleProviderForm } from './stale-forms.js';

/**
 * The OAuth 2.0 device authorization grant (RFC 8628) with Tsunagi's own pages. It is the way to
 * sign in with Google from inside an app's embedded browser (a LINE mini-app, for one): the app asks
 * Tsunagi for a user code, opens the verification page in the phone's real browser (or shows the
 * code), and polls the token endpoint while the person signs in there with any method.
 */
export const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

/** Seconds a client waits between polls (RFC 8628 section 3.2 `interval`; 5 is also its default). */
export const DEVICE_POLL_INTERVAL_SECONDS = 5;

type DeviceFlowFeature = NonNullable<NonNullable<Configuration['features']>['deviceFlow']>;

/** The page's locale: ?lang= (the language links), then the cookie Tsunagi's pages set, then Accept-Language. */
function deviceLocale(ctx: KoaContextWithOIDC): Locale {
  const chosen = typeof ctx.query.lang === 'string' && isLocale(ctx.query.lang) ? ctx.query.lang : undefined;
  return chosen ?? negotiateLocale({ cookie: ctx.cookies.get('tsunagi.locale'), acceptLanguage: ctx.get('accept-language') });
}

/** The form secret oidc-provider keeps in the session for the /device forms (its CSRF protection). */
function formSecret(ctx: KoaContextWithOIDC): string {
  const state = (ctx.oidc.session as unknown as { state?: { secret?: unknown } } | undefined)?.state;
  return typeof state?.secret === 'string' ? state.secret : '';
}

/** Messages for the errors oidc-provider re-renders the input page with (lib/helpers/re_render_errors.js). */
const INPUT_ERRORS: Record<string, string> = {
  NoCodeError: 'device.error.no_code',
  NotFoundError: 'device.error.not_found',
  ExpiredError: 'device.error.expired',
  AlreadyUsedError: 'device.error.already_used',
  AbortedError: 'device.error.aborted',
};

/** features.deviceFlow: base-20 codes (no vowels, no look-alikes) and Tsunagi's three screens. */
export function deviceFlowFeature(views: Views): DeviceFlowFeature {
  const render = (ctx: KoaContextWithOIDC, view: string, data: Record<string, unknown>) => {
    ctx.type = 'html';
    ctx.set('Cache-Control', 'no-store');
    ctx.body = views.render(view, { locale: deviceLocale(ctx), nonce: cspNonce(ctx), languageLinks: languageLinks(ctx) }, data);
  };
  const clientNameOf = (client: KoaContextWithOIDC['oidc']['client']) => (client?.clientName as string | undefined) ?? client?.clientId ?? '';

  return {
    enabled: true,
    charset: 'base-20',
    mask: '****-****',
    userCodeInputSource(ctx, _form, _out, err) {
      // A form left stale by a second tab is shown again, fresh and with the code the person sent:
      // one more "Continue" instead of an error and typing the code again.
      if (err && isStaleProviderForm(err)) {
        ctx.status = 200;
        const sent = ctx.oidc.params?.user_code;
        render(ctx, 'device-code', { action: ctx.oidc.urlFor('code_verification'), xsrf: formSecret(ctx), userCode: typeof sent === 'string' ? sent : '' });
        return;
      }
      const messageKey = err ? (INPUT_ERRORS[err.name] ?? 'device.error.generic') : undefined;
      render(ctx, 'device-code', {
        action: ctx.oidc.urlFor('code_verification'),
        xsrf: formSecret(ctx),
        userCode: (err as { userCode?: unknown } | undefined)?.userCode ?? '',
        messageKey,
      });
    },
    userCodeConfirmSource(ctx, _form, client, _deviceInfo, userCode) {
      render(ctx, 'device-confirm', {
        action: ctx.oidc.urlFor('code_verification'),
        xsrf: formSecret(ctx),
        userCode,
        clientName: clientNameOf(client),
      });
    },
    successSource(ctx) {
      render(ctx, 'device-success', { clientName: clientNameOf(ctx.oidc.client) });
    },
  };
}

/**
 * oidc-provider keeps the nonce of a device authorization request in its params but never copies
 * it to the device code, so the ID token would carry none. A relying party that binds a sign-in to
 * its own session with a nonce (the LINE mini-app backend does) needs it: copy it over while the
 * device code is being approved, before it is saved. Called from expiresWithSession, the one hook
 * oidc-provider calls with the device code at that moment.
 */
export function carryDeviceCodeNonce(source: unknown): void {
  const code = source as { kind?: unknown; nonce?: unknown; params?: { nonce?: unknown } };
  if (code.kind === 'DeviceCode' && code.nonce === undefined && typeof code.params?.nonce === 'string') code.nonce = code.params.nonce;
}

const POLL_RULE = { name: 'device-poll', limit: 1, windowSeconds: DEVICE_POLL_INTERVAL_SECONDS };

/**
 * Middleware on oidc-provider (provider.use) for the device grant's polling:
 * - the device authorization response says how often to poll (`interval`);
 * - a client polling a pending code faster than that gets `slow_down` (RFC 8628 section 3.5)
 *   instead of `authorization_pending`. The counter is shared by all Tsunagi processes (Redis or
 *   Postgres) and keyed by a hash of the device code, which never leaves the client otherwise.
 */
export function devicePolling(limiter: RateLimiter) {
  return async (ctx: KoaContextWithOIDC, next: () => Promise<void>) => {
    await next();
    const route = ctx.oidc?.route;
    if (route === 'device_authorization' && ctx.status === 200 && isRecord(ctx.body) && typeof ctx.body.device_code === 'string') {
      ctx.body = { ...ctx.body, interval: DEVICE_POLL_INTERVAL_SECONDS };
      return;
    }
    if (route !== 'token' || !isRecord(ctx.body) || ctx.body.error !== 'authorization_pending') return;
    const deviceCode = ctx.oidc.params?.device_code;
    if (typeof deviceCode !== 'string') return;
    const verdict = await limiter.hit(POLL_RULE, createHash('sha256').update(deviceCode).digest('base64url'));
    if (!verdict.allowed) {
      ctx.body = { error: 'slow_down', error_description: `poll at most every ${DEVICE_POLL_INTERVAL_SECONDS} seconds, and 5 seconds less often after each slow_down` };
    }
  };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * POST /device (the user-code form) from a browser whose provider session is missing or gone (no
 * cookie, cookies blocked, the session expired): oidc-provider 9 renders its error page and then
 * fails to save the session it never stored, answering a bare 500. Such a form cannot be valid (its
 * xsrf value lives in that session), so it is refused here first with a page saying to reload it.
 * Runs in Tsunagi's own middleware, in front of the provider.
 */
export function deviceFormNeedsSession(provider: () => { Session: { find(id: string): Promise<unknown> } }) {
  return async (ctx: Context, next: Next) => {
    if (ctx.method !== 'POST' || ctx.path !== '/device') return next();
    const sessionId = ctx.cookies.get(SESSION_COOKIE, { signed: true });
    if (sessionId && !sessionId.includes('\0') && (await provider().Session.find(sessionId))) return next();
    throw new MalformedRequest('the device form was sent without its session', 'error.csrf');
  };
}

/** oidc-provider's session cookie (its default name, which Tsunagi keeps). */
const SESSION_COOKIE = '_session';
