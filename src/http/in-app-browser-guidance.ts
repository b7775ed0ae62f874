import type { Context } from 'koa';
import type { UpstreamProviderName } from '../accounts/upstream-identity-store.js';
import { DEVICE_CODE_GRANT } from '../oidc/device-flow.js';
import type { Services } from '../services.js';
import { detectInAppBrowser, externalBrowserUrl, upstreamRefusedIn, type InAppBrowser } from './in-app-browser.js';
import type { Interaction } from './interaction-session.js';
import { page } from './page.js';

/** What views/partials/in-app-browser.eta shows in place of a provider refused in this browser. */
export interface InAppBrowserGuidance {
  kind: InAppBrowser['kind'];
  /** Providers whose button the login page replaces with this guidance. */
  refused: UpstreamProviderName[];
  providerName: string;
  appName: string;
  refusedKey: 'in_app.refused_named' | 'in_app.refused';
  /** The same authorization request, for the person's real browser. */
  authorizationUrl: string;
  /** A link the in-app browser itself opens in the real browser (LINE only). */
  openExternalUrl: string | undefined;
  /** The client may use the device authorization grant ("Sign in with a code"). */
  deviceFlow: boolean;
}

const APP_NAMES: Record<InAppBrowser['kind'], string> = { line: 'LINE', facebook: 'Facebook', instagram: 'Instagram', android_webview: '' };
const PROVIDER_NAMES: Record<UpstreamProviderName, string> = { google: 'Google', apple: 'Apple' };

/**
 * The authorization request of this interaction again, to be opened in another browser (a new
 * interaction starts there; the cookie of this one stays in the webview) or, with `changes`, for a
 * new sign-in in this one ("Not you?" on the consent screen). A change to undefined drops the parameter.
 */
export function authorizationUrlOf(issuer: string, details: Interaction, changes: Record<string, string | undefined> = {}): string {
  const url = new URL(`${issuer}/auth`);
  for (const [name, value] of Object.entries(details.params)) {
    if (typeof value === 'string' || typeof value === 'number') url.searchParams.set(name, String(value));
  }
  for (const [name, value] of Object.entries(changes)) {
    if (value === undefined) url.searchParams.delete(name); else url.searchParams.set(name, value);
  }
  return url.href;
}

/**
 * Guidance for a login page opened in an in-app browser that an enabled provider refuses, or
 * undefined when every enabled provider works here (a real browser, or no Google configured).
 */
export async function inAppBrowserGuidance(ctx: Context, services: Pick<Services, 'upstream' | 'host' | 'config'>, details: Interaction): Promise<InAppBrowserGuidance | undefined> {
  const browser = detectInAppBrowser(ctx.get('user-agent') || undefined);
  const refused = services.upstream.enabledProviders().filter((p) => upstreamRefusedIn(browser, p));
  if (!browser || refused.length === 0) return undefined;
  return describe(browser, refused, services, details);
}

async function describe(browser: InAppBrowser, refused: UpstreamProviderName[], services: Pick<Services, 'host' | 'config'>, details: Interaction): Promise<InAppBrowserGuidance> {
  const client = await services.host.current.Client.find(details.params.client_id as string);
  const authorizationUrl = authorizationUrlOf(services.config.issuer, details);
  const appName = APP_NAMES[browser.kind];
  return {
    kind: browser.kind,
    refused,
    providerName: refused.map((p) => PROVIDER_NAMES[p]).join(', '),
    appName,
    refusedKey: appName ? 'in_app.refused_named' : 'in_app.refused',
    authorizationUrl,
    openExternalUrl: externalBrowserUrl(browser, authorizationUrl),
    deviceFlow: client?.grantTypeAllowed(DEVICE_CODE_GRANT) ?? false,
  };
}

/**
 * For the route that would send the browser to `provider`: when this in-app browser is refused by
 * it, renders the guidance page (and answers true) instead of a redirect to the provider's error.
 */
export async function refuseUpstreamInAppBrowser(
  ctx: Context, services: Pick<Services, 'upstream' | 'host' | 'config' | 'views' | 'secureCookies'>, details: Interaction, provider: UpstreamProviderName,
): Promise<boolean> {
  const browser = detectInAppBrowser(ctx.get('user-agent') || undefined);
  if (!upstreamRefusedIn(browser, provider) || !browser) return false;
  const guidance = await describe(browser, [provider], services, details);
  const client = await services.host.current.Client.find(details.params.client_id as string);
  // 200: the page is the answer (a way forward), not an error of the person's doing.
  page(ctx, services, 'in-app-browser', {
    uid: details.uid, clientName: (client?.clientName as string | undefined) ?? details.params.client_id, inAppBrowser: guidance,
    languageReturnTo: `/interaction/${details.uid}`,
  });
  return true;
}
