// The code page's "Send a new code" just after a send: disabled for a short cooldown (the seconds
// are in the note the server wrote), then enabled. Without script, a reload after it does the same.
(function () {
  'use strict';
  var button = document.querySelector('[data-resend-after]');
  var note = document.querySelector('[data-resend-wait]');
  if (!button || !note) return;
  var seconds = Number(button.getAttribute('data-resend-after')) || 0;
  setTimeout(function () {
    button.disabled = false;
    note.textContent = note.getAttribute('data-msg-ready');
  }, seconds * 1000);
})();
