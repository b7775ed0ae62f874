import { detectInAppBrowser, externalBrowserUrl, upstreamRefusedIn } from '../../src/http/in-app-browser.js';

// Real user agents, as these browsers send them.
const UA = {
  lineIos: 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Safari Line/13.21.0',
  lineAndroid: 'Mozilla/5.0 (Linux; Android 13; SM-S911N Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/119.0.6045.163 Mobile Safari/537.36 Line/13.20.2/IAB',
  liffIos: 'Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Safari Line/13.14.0 LIFF',
  liffAndroid: 'Mozilla/5.0 (Linux; Android 12; Pixel 6 Build/SQ3A.220705.003; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/114.0.5735.196 Mobile Safari/537.36 Line/13.10.1/IAB LIFF',
  facebookIos: 'Mozilla/5.0 (iPhone; CPU iPhone OS 16_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBDV/iPhone14,5;FBMD/iPhone;FBSN/iOS;FBSV/16.5;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5]',
  facebookAndroid: 'Mozilla/5.0 (Linux; Android 12; Pixel 6 Build/SD1A.210817.036; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/94.0.4606.71 Mobile Safari/537.36 [FB_IAB/FB4A;FBAV/339.0.0.10.100;]',
  instagramIos: 'Mozilla/5.0 (iPhone; CPU iPhone OS 16_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Instagram 283.0.0.20.105 (iPhone14,2; iOS 16_4; en_US; en; scale=3.00; 1170x2532; 471870767)',
  instagramAndroid: 'Mozilla/5.0 (Linux; Android 13; SM-G991B Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/116.0.5845.163 Mobile Safari/537.36 Instagram 301.0.0.33.110 Android (33/13; 420dpi; 1080x2176; samsung; SM-G991B; o1s; exynos2100; en_US; 520702200)',
  androidWebView: 'Mozilla/5.0 (Linux; Android 10; K; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/120.0.6099.210 Mobile Safari/537.36',
  chromeAndroid: 'Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36',
  safariIos: 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1',
  chromeIos: 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/120.0.6099.119 Mobile/15E148 Safari/604.1',
  chromeDesktop: 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36',
  firefoxDesktop: 'Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0',
  // Not LINE: another app's token that merely contains "line".
  onlineApp: 'Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36 Online/2.1',
};

describe('in-app browser detection by user agent', () => {
  it('recognises LINE\'s in-app browser on iOS and Android, and says it is not LIFF', () => {
    expect(detectInAppBrowser(UA.lineIos)).toEqual({ kind: 'line', liff: false });
    expect(detectInAppBrowser(UA.lineAndroid)).toEqual({ kind: 'line', liff: false });
  });

  it('recognises a LIFF app (LINE adds "LIFF") on iOS and Android', () => {
    expect(detectInAppBrowser(UA.liffIos)).toEqual({ kind: 'line', liff: true });
    expect(detectInAppBrowser(UA.liffAndroid)).toEqual({ kind: 'line', liff: true });
  });

  it('recognises Facebook and Instagram in-app browsers before the Android WebView they run in', () => {
    expect(detectInAppBrowser(UA.facebookIos)).toEqual({ kind: 'facebook' });
    expect(detectInAppBrowser(UA.facebookAndroid)).toEqual({ kind: 'facebook' });
    expect(detectInAppBrowser(UA.instagramIos)).toEqual({ kind: 'instagram' });
    expect(detectInAppBrowser(UA.instagramAndroid)).toEqual({ kind: 'instagram' });
  });

  it('recognises any other Android WebView by "; wv)"', () => {
    expect(detectInAppBrowser(UA.androidWebView)).toEqual({ kind: 'android_webview' });
  });

  it('leaves real browsers alone, including Chrome on iOS and an app whose token only contains "line"', () => {
    for (const ua of [UA.chromeAndroid, UA.safariIos, UA.chromeIos, UA.chromeDesktop, UA.firefoxDesktop, UA.onlineApp]) {
      expect(detectInAppBrowser(ua)).toBeUndefined();
    }
    expect(detectInAppBrowser(undefined)).toBeUndefined();
    expect(detectInAppBrowser('')).toBeUndefined();
  });
});

describe('which sign-in options fail in an in-app browser', () => {
  it('refuses Google in every detected in-app browser, and nothing in a real browser', () => {
    for (const ua of [UA.lineIos, UA.liffAndroid, UA.facebookIos, UA.instagramAndroid, UA.androidWebView]) {
      expect(upstreamRefusedIn(detectInAppBrowser(ua), 'google')).toBe(true);
      expect(upstreamRefusedIn(detectInAppBrowser(ua), 'apple')).toBe(false);
    }
    expect(upstreamRefusedIn(detectInAppBrowser(UA.safariIos), 'google')).toBe(false);
  });
});

describe('opening the same URL in the external browser', () => {
  const auth = 'https://id.example.com/auth?client_id=abc&redirect_uri=https%3A%2F%2Fapp.example.com%2F&code_challenge=x';

  it('adds openExternalBrowser=1 for LINE, keeping every other parameter', () => {
    const url = new URL(externalBrowserUrl({ kind: 'line', liff: true }, auth) as string);
    expect(url.searchParams.get('openExternalBrowser')).toBe('1');
    expect(url.searchParams.get('client_id')).toBe('abc');
    expect(url.searchParams.get('redirect_uri')).toBe('https://app.example.com/');
    expect(url.origin + url.pathname).toBe('https://id.example.com/auth');
  });

  it('has no such switch for other webviews', () => {
    expect(externalBrowserUrl({ kind: 'facebook' }, auth)).toBeUndefined();
    expect(externalBrowserUrl({ kind: 'android_webview' }, auth)).toBeUndefined();
  });
});
