// Passkey ceremonies for the login page and the account page, on top of @simplewebauthn/browser
// (served as /assets/simplewebauthn-browser.js). Everything the person reads comes from the page's
// data-msg-* attributes or the server's JSON `message`, so it is in their language.
(function () {
  'use strict';

  var lib = window.SimpleWebAuthnBrowser;
  if (!lib || !lib.browserSupportsWebAuthn()) {
    document.querySelectorAll('[data-passkey-unsupported]').forEach(function (el) { el.hidden = false; });
    return;
  }

  function postJSON(url, csrf, data) {
    return fetch(url, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'content-type': 'application/json', accept: 'application/json', 'x-csrf-token': csrf },
      body: JSON.stringify(data || {}),
    }).then(function (res) {
      return res.json().catch(function () { return {}; }).then(function (body) {
        if (!res.ok) {
          var err = new Error(body.message || '');
          err.server = body;
          throw err;
        }
        return body;
      });
    });
  }

  /** The ceremony was cancelled or replaced (by the person, the browser or another ceremony). */
  function aborted(err) {
    return err && (err.name === 'AbortError' || err.code === 'ERROR_CEREMONY_ABORTED' || (err.cause && err.cause.name === 'AbortError'));
  }

  function messageFor(area, err) {
    if (err && err.server && err.server.message) return err.server.message;
    if (err && err.code === 'ERROR_AUTHENTICATOR_PREVIOUSLY_REGISTERED') return area.dataset.msgDuplicate;
    if (err && (err.name === 'NotAllowedError' || aborted(err))) return area.dataset.msgCancelled;
    return area.dataset.msgFailed;
  }

  function showError(area, err) {
    var box = area.querySelector('[data-passkey-error]');
    if (!box) return;
    box.textContent = messageFor(area, err);
    var loginUrl = err && err.server && err.server.loginUrl;
    if (loginUrl && area.dataset.msgSignIn) {
      var link = document.createElement('a');
      link.href = loginUrl;
      link.textContent = area.dataset.msgSignIn;
      box.appendChild(document.createTextNode(' '));
      box.appendChild(link);
    }
    box.hidden = false;
  }

  function clearError(area) {
    var box = area.querySelector('[data-passkey-error]');
    if (box) { box.hidden = true; box.textContent = ''; }
  }

  // Login page: a button for any passkey of this site, and the email field's autofill where offered.
  var login = document.querySelector('[data-passkey-login-area]');
  if (login) {
    var button = login.querySelector('[data-passkey-login]');
    var csrf = login.dataset.csrf;
    var finish = function (response) {
      return postJSON(login.dataset.verifyUrl, csrf, { response: response }).then(function (result) {
        window.location.assign(result.redirectTo);
      });
    };
    // Autofill (conditional mediation) waits quietly in the email field. Only a passkey the person
    // picked and the server refused is worth a message; anything else (no autofill, the page being
    // left, a network hiccup) is not theirs to deal with. It re-arms a few times at most.
    var autofillTries = 0;
    var autofill = function () {
      var pkc = window.PublicKeyCredential;
      if (login.hasAttribute('data-no-autofill')) return; // no username field here (e.g. the link page)
      if (!pkc || typeof pkc.isConditionalMediationAvailable !== 'function' || autofillTries >= 3) return;
      autofillTries += 1;
      pkc.isConditionalMediationAvailable().then(function (available) {
        if (!available) return;
        return postJSON(login.dataset.optionsUrl, csrf)
          .then(function (options) { return lib.startAuthentication({ optionsJSON: options, useBrowserAutofill: true }); })
          .then(finish)
          .catch(function (err) {
            if (aborted(err) || !err || !err.server) return; // the button took over, or nothing the person did
            showError(login, err);
            autofill();
          });
      }).catch(function () { /* no autofill: the button still works */ });
    };

    if (button) {
      button.hidden = false;
      button.addEventListener('click', function () {
        clearError(login);
        button.disabled = true;
        postJSON(login.dataset.optionsUrl, csrf)
          .then(function (options) { return lib.startAuthentication({ optionsJSON: options }); })
          .then(finish)
          .catch(function (err) {
            button.disabled = false;
            showError(login, err);
            autofill();
          });
      });
    }
    autofill();
  }

  // Account page: name a new passkey and create it.
  document.querySelectorAll('[data-passkey-register]').forEach(function (form) {
    var area = form.closest('[data-passkey-area]') || form;
    form.hidden = false;
    form.addEventListener('submit', function (event) {
      event.preventDefault();
      clearError(area);
      var submit = form.querySelector('button[type=submit]');
      var name = form.querySelector('input[name=name]');
      if (submit) submit.disabled = true;
      postJSON(form.dataset.optionsUrl, form.dataset.csrf)
        .then(function (options) { return lib.startRegistration({ optionsJSON: options }); })
        .then(function (response) {
          return postJSON(form.dataset.verifyUrl, form.dataset.csrf, { response: response, name: name ? name.value : '' });
        })
        .then(function (result) { window.location.assign(result.redirectTo); })
        .catch(function (err) {
          if (submit) submit.disabled = false;
          showError(area, err);
        });
    });
  });
})();
