// Passkeys and security keys (AUTH-08). The server hands out WebAuthn
// options as JSON with binary fields in base64url; this script turns them
// into what navigator.credentials.create and .get take, and the
// authenticator's answer back into JSON for the server. It holds no secret:
// the private key never leaves the authenticator, and the server keeps its
// half of each ceremony.
//
// window.CustodiaPasskey.register(name) adds a passkey to the signed-in
// account; .signIn(challenge) answers a sign-in challenge with one;
// .enrol(challenge, name) sets one up with an enrolment challenge;
// .confirm() renews the signed-in session's confirmation (step-up). On the
// pages: a button with id "add-passkey" registers one under the name in
// #passkey-name and reports in #passkey-status; "use-passkey" answers the
// sign-in's second step; "enrol-passkey" sets one up at a required
// enrolment; "confirm-passkey" confirms on the step-up page.
(function () {
  "use strict";

  function toBuffer(s) {
    var b64 = s.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) {
      b64 += "=";
    }
    var bin = atob(b64);
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) {
      out[i] = bin.charCodeAt(i);
    }
    return out.buffer;
  }

  function toBase64url(buf) {
    if (!buf) {
      return undefined;
    }
    var bytes = new Uint8Array(buf);
    var bin = "";
    for (var i = 0; i < bytes.length; i++) {
      bin += String.fromCharCode(bytes[i]);
    }
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function descriptors(list) {
    return (list || []).map(function (d) {
      return { type: d.type, id: toBuffer(d.id), transports: d.transports };
    });
  }

  function creationOptions(o) {
    var pk = Object.assign({}, o.publicKey);
    pk.challenge = toBuffer(pk.challenge);
    pk.user = Object.assign({}, pk.user, { id: toBuffer(pk.user.id) });
    pk.excludeCredentials = descriptors(pk.excludeCredentials);
    return { publicKey: pk };
  }

  function requestOptions(o) {
    var pk = Object.assign({}, o.publicKey);
    pk.challenge = toBuffer(pk.challenge);
    pk.allowCredentials = descriptors(pk.allowCredentials);
    return { publicKey: pk };
  }

  function credentialJSON(c) {
    var r = c.response;
    var response = { clientDataJSON: toBase64url(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = toBase64url(r.attestationObject);
      response.transports = typeof r.getTransports === "function" ? r.getTransports() : [];
    } else {
      response.authenticatorData = toBase64url(r.authenticatorData);
      response.signature = toBase64url(r.signature);
      response.userHandle = toBase64url(r.userHandle);
    }
    return {
      id: c.id,
      rawId: toBase64url(c.rawId),
      type: c.type,
      authenticatorAttachment: c.authenticatorAttachment || undefined,
      response: response,
      clientExtensionResults: c.getClientExtensionResults ? c.getClientExtensionResults() : {}
    };
  }

  // post sends JSON to the API and resolves to its JSON answer, or rejects
  // with the server's message.
  function post(path, body) {
    return fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body || {})
    }).then(function (resp) {
      return resp.json().catch(function () { return {}; }).then(function (data) {
        if (!resp.ok) {
          var msg = data && data.error && data.error.message ? data.error.message : "the server answered " + resp.status;
          var err = new Error(msg);
          err.status = resp.status;
          throw err;
        }
        return data;
      });
    });
  }

  function register(name) {
    return post("/api/v1/account/factors/webauthn").then(function (options) {
      return navigator.credentials.create(creationOptions(options));
    }).then(function (cred) {
      return post("/api/v1/account/factors/webauthn/confirm", { name: name || "", credential: credentialJSON(cred) });
    });
  }

  function signIn(challenge) {
    return post("/api/v1/auth/second-factor/webauthn/options", { challenge: challenge }).then(function (options) {
      return navigator.credentials.get(requestOptions(options));
    }).then(function (cred) {
      return post("/api/v1/auth/second-factor/webauthn", { challenge: challenge, credential: credentialJSON(cred) });
    });
  }

  function enrol(challenge, name) {
    return post("/api/v1/auth/enrolment/webauthn", { challenge: challenge }).then(function (options) {
      return navigator.credentials.create(creationOptions(options));
    }).then(function (cred) {
      return post("/api/v1/auth/enrolment/webauthn/confirm", { challenge: challenge, name: name || "", credential: credentialJSON(cred) });
    });
  }

  function confirm() {
    return post("/api/v1/auth/confirm/webauthn/options").then(function (options) {
      return navigator.credentials.get(requestOptions(options));
    }).then(function (cred) {
      return post("/api/v1/auth/confirm/webauthn", { credential: credentialJSON(cred) });
    });
  }

  // enrolPage sets up a passkey with the enrolment challenge the server
  // keeps in an HttpOnly cookie, and resolves to the recovery codes and the
  // page to go to.
  function enrolPage(name) {
    return post("/login/enrol/webauthn/options").then(function (options) {
      return navigator.credentials.create(creationOptions(options));
    }).then(function (cred) {
      return post("/login/enrol/webauthn", { name: name || "", credential: credentialJSON(cred) });
    });
  }

  // localPath is p if it is a path on this site, else "/".
  function localPath(p) {
    return typeof p === "string" && p.charAt(0) === "/" && p.charAt(1) !== "/" && p.indexOf("\\") < 0 ? p : "/";
  }

  // showCodes appends the recovery codes, shown this once, to el.
  function showCodes(el, codes, id) {
    var note = document.createElement("p");
    note.textContent = "Your recovery codes, shown this once. Keep them somewhere safe:";
    var list = document.createElement("ul");
    list.id = id;
    codes.forEach(function (c) {
      var li = document.createElement("li");
      li.textContent = c;
      list.appendChild(li);
    });
    el.appendChild(note);
    el.appendChild(list);
  }

  // signInPage answers the sign-in page's challenge, which the server
  // keeps in an HttpOnly cookie this script never sees, with a passkey,
  // and resolves to the page to go to.
  function signInPage() {
    return post("/login/second-factor/webauthn/options").then(function (options) {
      return navigator.credentials.get(requestOptions(options));
    }).then(function (cred) {
      return post("/login/second-factor/webauthn", { credential: credentialJSON(cred) });
    });
  }

  window.CustodiaPasskey = {
    register: register,
    signIn: signIn,
    signInPage: signInPage,
    enrol: enrol,
    enrolPage: enrolPage,
    confirm: confirm,
    credentialJSON: credentialJSON,
    requestOptions: requestOptions
  };

  // On the sign-in's second step: a button with id "use-passkey" answers
  // it with a passkey and reports in #passkey-signin-status.
  var use = document.getElementById("use-passkey");
  var useStatus = document.getElementById("passkey-signin-status");
  if (use && useStatus) {
    if (!window.PublicKeyCredential) {
      useStatus.textContent = "This browser does not support passkeys.";
      use.disabled = true;
    } else {
      use.addEventListener("click", function () {
        use.disabled = true;
        useStatus.textContent = "Follow your browser's prompt…";
        signInPage().then(function () {
          useStatus.textContent = "Signed in.";
          window.location.assign("/");
        }).catch(function (err) {
          useStatus.textContent = "The passkey did not sign you in: " + (err && err.message ? err.message : "cancelled") + ".";
          use.disabled = false;
        });
      });
    }
  }

  // At a required enrolment: a button with id "enrol-passkey" sets up a
  // passkey under the name in #enrol-passkey-name instead of the app, and
  // reports in #passkey-enrol-status, with the recovery codes and a link on.
  var enrolButton = document.getElementById("enrol-passkey");
  var enrolStatus = document.getElementById("passkey-enrol-status");
  if (enrolButton && enrolStatus) {
    if (!window.PublicKeyCredential) {
      enrolStatus.textContent = "This browser does not support passkeys.";
      enrolButton.disabled = true;
    } else {
      enrolButton.addEventListener("click", function () {
        var input = document.getElementById("enrol-passkey-name");
        enrolButton.disabled = true;
        enrolStatus.textContent = "Follow your browser's prompt…";
        enrolPage(input ? input.value : "").then(function (out) {
          enrolStatus.textContent = "Passkey set up. You are signed in.";
          if (out.recovery_codes && out.recovery_codes.length) {
            showCodes(enrolStatus, out.recovery_codes, "passkey-recovery-codes");
          }
          var p = document.createElement("p");
          var a = document.createElement("a");
          a.id = "continue";
          a.href = localPath(out.next);
          a.textContent = "I have saved them; continue";
          p.appendChild(a);
          enrolStatus.appendChild(p);
          var form = document.querySelector("form[action='/login/enrol']");
          if (form) {
            form.hidden = true;
          }
        }).catch(function (err) {
          enrolStatus.textContent = "The passkey was not set up: " + (err && err.message ? err.message : "cancelled") + ".";
          enrolButton.disabled = false;
        });
      });
    }
  }

  // On the step-up page: a button with id "confirm-passkey" confirms with a
  // passkey, reports in #passkey-confirm-status and goes back to the page
  // the form names.
  var confirmButton = document.getElementById("confirm-passkey");
  var confirmStatus = document.getElementById("passkey-confirm-status");
  if (confirmButton && confirmStatus) {
    if (!window.PublicKeyCredential) {
      confirmStatus.textContent = "This browser does not support passkeys.";
      confirmButton.disabled = true;
    } else {
      confirmButton.addEventListener("click", function () {
        var next = document.querySelector("#confirm-form input[name='next']");
        confirmButton.disabled = true;
        confirmStatus.textContent = "Follow your browser's prompt…";
        confirm().then(function () {
          confirmStatus.textContent = "Confirmed.";
          var back = new URL(localPath(next ? next.value : "/"), window.location.origin);
          back.searchParams.set("done", "confirmed");
          window.location.assign(back.pathname + back.search);
        }).catch(function (err) {
          confirmStatus.textContent = "The passkey did not confirm it is you: " + (err && err.message ? err.message : "cancelled") + ".";
          confirmButton.disabled = false;
        });
      });
    }
  }

  var button = document.getElementById("add-passkey");
  var status = document.getElementById("passkey-status");
  if (!button || !status) {
    return;
  }
  if (!window.PublicKeyCredential) {
    status.textContent = "This browser does not support passkeys.";
    button.disabled = true;
    return;
  }
  button.addEventListener("click", function () {
    var input = document.getElementById("passkey-name");
    button.disabled = true;
    status.textContent = "Follow your browser's prompt…";
    register(input ? input.value : "").then(function (out) {
      status.textContent = "Passkey “" + out.passkey.name + "” added.";
      if (out.recovery_codes && out.recovery_codes.length) {
        showCodes(status, out.recovery_codes, "passkey-recovery-codes");
      }
    }).catch(function (err) {
      status.textContent = "The passkey was not added: " + (err && err.message ? err.message : "cancelled") + ".";
    }).then(function () {
      button.disabled = false;
    });
  });
})();
