import type { UpstreamProviderName } from '../accounts/upstream-identity-store.js';

/**
 * Embedded browsers ("webviews") that Google refuses to sign in from (403 disallowed_useragent,
 * Google's "Use secure browsers" policy). Known from the user agent only: an app can lie about it,
 * so this decides which guidance to show, never who may do what.
 *
 * - `line`: LINE's in-app browser; `liff` when the page runs as a LIFF app (LINE adds "LIFF").
 *   LINE opens a URL carrying `openExternalBrowser=1` in the phone's default browser.
 * - `facebook`, `instagram`: Meta's in-app browsers.
 * - `android_webview`: any other Android WebView (Chrome marks it with "; wv)").
 */
export type InAppBrowser =
  | { kind: 'line'; liff: boolean }
  | { kind: 'facebook' }
  | { kind: 'instagram' }
  | { kind: 'android_webview' };

// LINE ends its user agent with "Line/<version>" (Android adds "/IAB"); the capital L and the
// leading space keep "Online/1.0" and similar tokens of other apps out.
const LINE = / Line\/\d+(\.\d+)*/;
const LIFF = /(^|\s)LIFF(\s|\/|$)/;
// Facebook for iOS: [FBAN/FBIOS;...]; for Android: [FB_IAB/FB4A;FBAV/...]; Messenger: FBAN/MessengerForiOS.
const FACEBOOK = /\bFB_IAB\/|\bFBAN\/|\bFBAV\//;
const INSTAGRAM = /\bInstagram \d/;
const ANDROID_WEBVIEW = /\bAndroid\b[^)]*; wv\)/;

export function detectInAppBrowser(userAgent: string | undefined): InAppBrowser | undefined {
  if (!userAgent) return undefined;
  if (LINE.test(userAgent)) return { kind: 'line', liff: LIFF.test(userAgent) };
  if (FACEBOOK.test(userAgent)) return { kind: 'facebook' };
  if (INSTAGRAM.test(userAgent)) return { kind: 'instagram' };
  if (ANDROID_WEBVIEW.test(userAgent)) return { kind: 'android_webview' };
  return undefined;
}

/**
 * Whether signing in with `provider` fails inside this browser. Google refuses every embedded
 * browser; Apple's sign-in page works in them, as do Tsunagi's own codes and passkeys.
 */
export function upstreamRefusedIn(browser: InAppBrowser | undefined, provider: UpstreamProviderName): boolean {
  return browser !== undefined && provider === 'google';
}

/**
 * A URL that the in-app browser opens in the phone's own browser, when it has such a switch: LINE
 * honours `openExternalBrowser=1` (documented by LINE for URLs opened in its in-app browser).
 * Other webviews have no switch; the person has to use the app's "open in browser" menu.
 */
export function externalBrowserUrl(browser: InAppBrowser, url: string): string | undefined {
  if (browser.kind !== 'line') return undefined;
  const u = new URL(url);
  u.searchParams.set('openExternalBrowser', '1');
  return u.href;
}
