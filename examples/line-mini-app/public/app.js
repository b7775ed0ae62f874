// @ts-check
// The LIFF page of "method 1": prove the LINE user to our backend with the LIFF access token, sign
// in to Tsunagi with code + PKCE as a public client, and hand Tsunagi's ID token to the backend.
// Plain ES module, no build step. `liff` is the global the LIFF SDK defines.

/** @typedef {{ liffId: string | null, issuer: string, clientId: string, emailOrPhone: boolean, linkCode: boolean }} PageConfig */

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const status = (/** @type {string} */ text) => { $('status').textContent = text; };
const showError = (/** @type {string} */ text) => { const e = $('error'); e.textContent = text; e.hidden = false; };
// The redirect URI is this page itself, exactly as registered at Tsunagi.
const redirectUri = `${location.origin}/`;
const PENDING = 'tsunagi-link-pending';

/** @returns {any} */
function liffSdk() {
  return /** @type {any} */ (globalThis).liff;
}

/** @param {Uint8Array} bytes */
function base64url(bytes) {
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}
const randomString = () => base64url(crypto.getRandomValues(new Uint8Array(32)));
async function s256(/** @type {string} */ verifier) {
  return base64url(new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier))));
}

/** Calls our backend with the LIFF access token; throws the backend's message on error. */
async function backend(/** @type {string} */ method, /** @type {string} */ path, /** @type {unknown} */ body) {
  const res = await fetch(path, {
    method,
    headers: { authorization: `Bearer ${liffSdk().getAccessToken()}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const json = await res.json();
  if (!res.ok) throw new Error(json.message ?? `The server answered ${res.status}`);
  return json;
}

async function discovery(/** @type {string} */ issuer) {
  const res = await fetch(`${issuer}/.well-known/openid-configuration`);
  if (!res.ok) throw new Error('Could not reach the sign-in service.');
  return res.json();
}

/** Step 1: a nonce from our backend (bound to this LINE user), then off to Tsunagi. */
async function startLinking(/** @type {PageConfig} */ config) {
  const { nonce } = await backend('POST', '/link/start');
  const verifier = randomString();
  const state = randomString();
  sessionStorage.setItem(PENDING, JSON.stringify({ verifier, state }));
  const { authorization_endpoint: authorizationEndpoint } = await discovery(config.issuer);
  const url = new URL(authorizationEndpoint);
  url.search = new URLSearchParams({
    client_id: config.clientId, redirect_uri: redirectUri, response_type: 'code', scope: 'openid',
    nonce, state, code_challenge: await s256(verifier), code_challenge_method: 'S256',
    // A recent sign-in: Tsunagi asks again when its session is older than this.
    max_age: '600',
  }).toString();
  location.assign(url.href);
}

/** Step 2: back from Tsunagi with a code: exchange it (CORS), then let the backend link. */
async function finishLinking(/** @type {PageConfig} */ config, /** @type {URLSearchParams} */ params) {
  const pending = JSON.parse(sessionStorage.getItem(PENDING) ?? 'null');
  sessionStorage.removeItem(PENDING);
  history.replaceState(null, '', redirectUri);
  if (params.get('error')) throw new Error(`Sign-in did not finish: ${params.get('error_description') ?? params.get('error')}`);
  if (!pending || pending.state !== params.get('state')) throw new Error('This sign-in was not started here. Try again.');
  const { token_endpoint: tokenEndpoint } = await discovery(config.issuer);
  const res = await fetch(tokenEndpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code', code: params.get('code') ?? '', redirect_uri: redirectUri,
      client_id: config.clientId, code_verifier: pending.verifier,
    }),
  });
  const tokens = await res.json();
  if (!res.ok) throw new Error(`Sign-in failed: ${tokens.error_description ?? tokens.error}`);
  const linked = await backend('POST', '/link/complete', { id_token: tokens.id_token });
  status(linked.created ? 'Linked! You will get updates on LINE.' : 'Already linked. You will get updates on LINE.');
  $('unlink').hidden = false;
}

/**
 * Google refuses sign-in inside LINE's browser (403 disallowed_useragent), and a sign-in finished in
 * the external browser would end there, without this page's PKCE verifier. So for Google: the device
 * authorization grant (RFC 8628). This page asks Tsunagi for a user code (with the backend's nonce),
 * opens the verification page in the phone's browser, and polls the token endpoint (both by CORS).
 */
async function linkWithCode(/** @type {PageConfig} */ config) {
  const { nonce } = await backend('POST', '/link/start');
  const meta = await discovery(config.issuer);
  const form = (/** @type {Record<string, string>} */ fields) => ({
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(fields),
  });
  const started = await fetch(meta.device_authorization_endpoint, form({ client_id: config.clientId, scope: 'openid', nonce, max_age: '600' }));
  const device = await started.json();
  if (!started.ok) throw new Error(`Could not start: ${device.error_description ?? device.error}`);
  $('user-code').textContent = device.user_code;
  const uri = /** @type {HTMLAnchorElement} */ ($('device-uri'));
  uri.href = device.verification_uri_complete;
  uri.textContent = device.verification_uri;
  $('device').hidden = false;
  $('link').hidden = true;
  $('link-with-code').hidden = true;
  status('Waiting for you to sign in in your browser…');
  liffSdk().openWindow({ url: device.verification_uri_complete, external: true });

  let interval = (device.interval ?? 5) * 1000;
  const deadline = Date.now() + device.expires_in * 1000;
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, interval));
    if (Date.now() > deadline) throw new Error('The code expired. Try again.');
    const res = await fetch(meta.token_endpoint, form({ grant_type: 'urn:ietf:params:oauth:grant-type:device_code', device_code: device.device_code, client_id: config.clientId }));
    const answer = await res.json();
    if (res.ok) {
      $('device').hidden = true;
      status('Linking…');
      return answer;
    }
    if (answer.error === 'slow_down') interval += 5000; // RFC 8628 section 3.5
    else if (answer.error !== 'authorization_pending') throw new Error(answer.error === 'access_denied' ? 'The sign-in was cancelled.' : `Sign-in failed: ${answer.error_description ?? answer.error}`);
  }
}

/**
 * Method 2 (OpenID CIBA): the backend asks Tsunagi to reach the person at the address they typed;
 * this page shows the binding message the mail or SMS also names, and asks the backend until the
 * person approved (or refused) at Tsunagi. The backend polls Tsunagi, at most once per interval.
 */
async function linkWithEmailOrPhone(/** @type {string} */ loginHint) {
  const started = await backend('POST', '/ciba/start', { login_hint: loginHint });
  $('binding-message').textContent = started.binding_message;
  $('ciba').hidden = false;
  $('ciba-form').hidden = true;
  $('link').hidden = true;
  $('link-with-code').hidden = true;
  status('Waiting for your approval…');
  const deadline = Date.now() + started.expires_in * 1000;
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, started.interval * 1000));
    if (Date.now() > deadline) throw new Error('The request expired before it was approved. Try again.');
    const answer = await backend('POST', '/ciba/poll', { request_id: started.request_id });
    if (answer.linked) return answer;
  }
}

async function main() {
  /** @type {PageConfig} */
  const config = await (await fetch('/config.json')).json();
  const liff = liffSdk();
  await liff.init({ liffId: config.liffId });
  // Outside the LINE app the person logs in to LINE first; inside it they already are.
  if (!liff.isLoggedIn()) { liff.login({ redirectUri: location.href }); return; }

  $('link').addEventListener('click', () => {
    $('error').hidden = true;
    status('Starting sign-in…');
    startLinking(config).catch((/** @type {Error} */ err) => { status('Not linked.'); showError(err.message); });
  });
  $('link-with-code').addEventListener('click', () => {
    $('error').hidden = true;
    linkWithCode(config)
      .then((tokens) => backend('POST', '/link/complete', { id_token: tokens.id_token }))
      .then((linked) => {
        status(linked.created ? 'Linked! You will get updates on LINE.' : 'Already linked. You will get updates on LINE.');
        $('unlink').hidden = false;
      })
      .catch((/** @type {Error} */ err) => {
        $('device').hidden = true;
        status('Not linked.');
        showError(err.message);
        $('link').hidden = false;
        $('link-with-code').hidden = false;
      });
  });
  $('ciba-form').addEventListener('submit', (event) => {
    event.preventDefault();
    $('error').hidden = true;
    const input = /** @type {HTMLInputElement} */ ($('login-hint'));
    linkWithEmailOrPhone(input.value)
      .then((linked) => {
        $('ciba').hidden = true;
        status(linked.created ? 'Linked! You will get updates on LINE.' : 'Already linked. You will get updates on LINE.');
        $('unlink').hidden = false;
      })
      .catch((/** @type {Error} */ err) => {
        $('ciba').hidden = true;
        status('Not linked.');
        showError(err.message);
        $('ciba-form').hidden = false;
        $('link').hidden = false;
        $('link-with-code').hidden = false;
      });
  });
  $('code-form').addEventListener('submit', (event) => {
    event.preventDefault();
    $('error').hidden = true;
    const input = /** @type {HTMLInputElement} */ ($('link-code'));
    backend('POST', '/link/code', { code: input.value })
      .then((linked) => {
        status(linked.created ? 'Linked! You will get updates on LINE.' : 'Already linked. You will get updates on LINE.');
        $('code-form').hidden = true;
        $('unlink').hidden = false;
      })
      .catch((/** @type {Error} */ err) => showError(err.message));
  });
  $('unlink').addEventListener('click', () => {
    backend('DELETE', '/link').then(() => { status('Unlinked.'); $('unlink').hidden = true; })
      .catch((/** @type {Error} */ err) => showError(err.message));
  });

  const params = new URLSearchParams(location.search);
  if (params.has('code') || params.has('error')) {
    status('Linking…');
    await finishLinking(config, params);
  } else {
    status('Not linked yet.');
    $('link').hidden = false;
    $('link-with-code').hidden = false;
    $('ciba-form').hidden = !config.emailOrPhone;
    $('code-form').hidden = !config.linkCode;
  }
}

main().catch((err) => { status('Not linked.'); showError(err.message); $('link').hidden = false; });
