// Idle warning (AUTH-10): the page knows, from data attributes the server
// set, how many seconds the session has before its idle limit ends it and
// how long before that to warn. It polls nothing: one timer shows the
// warning, another ends the page when the session ends: what it showed is
// removed and the browser goes to the sign-in page, which says why, in the
// page's place in the history (ASVS V14.3.1: nothing of it is left on the
// screen or one step back). "Stay signed in" posts to /session/keep-alive,
// which records activity and answers the new time left.
(function () {
  "use strict";
  var body = document.body;
  var left = parseInt(body.getAttribute("data-idle-left"), 10);
  var warn = parseInt(body.getAttribute("data-idle-warn"), 10);
  var warning = document.getElementById("idle-warning");
  var ended = document.getElementById("idle-ended");
  var form = document.getElementById("keep-alive");
  var seconds = document.getElementById("idle-seconds");
  if (isNaN(left) || isNaN(warn) || !warning || !ended || !form) {
    return;
  }
  var warnTimer = 0, endTimer = 0, tick = 0, deadline = 0;

  function show() {
    warning.hidden = false;
    update();
    tick = window.setInterval(update, 1000);
    var button = document.getElementById("stay-signed-in");
    if (button) {
      button.focus();
    }
  }

  function update() {
    var s = Math.max(0, Math.round((deadline - Date.now()) / 1000));
    seconds.textContent = s + (s === 1 ? " second" : " seconds");
  }

  function end() {
    window.clearInterval(tick);
    warning.hidden = true;
    ended.hidden = false;
    var main = document.querySelector("main");
    if (main) {
      main.replaceChildren();
    }
    document.title = "Signed out";
    window.location.replace("/login?done=idle");
  }

  function arm(secondsLeft) {
    window.clearTimeout(warnTimer);
    window.clearTimeout(endTimer);
    window.clearInterval(tick);
    warning.hidden = true;
    ended.hidden = true;
    deadline = Date.now() + secondsLeft * 1000;
    warnTimer = window.setTimeout(show, Math.max(0, secondsLeft - warn) * 1000);
    endTimer = window.setTimeout(end, secondsLeft * 1000);
  }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    fetch(form.action, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Accept": "application/json" }
    }).then(function (resp) {
      if (!resp.ok) {
        throw new Error("keep-alive refused");
      }
      return resp.json();
    }).then(function (data) {
      arm(data.idle_left);
    }).catch(end);
  });

  arm(left);
}());
