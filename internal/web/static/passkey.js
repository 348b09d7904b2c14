// Passkeys and security keys (AUTH-08). The server hands out WebAuthn
// options as JSON with binary fields in base64url; this script turns them
// into what navigator.credentials.create and .get take, and the
// authenticator's answer back into JSON for the server. It holds no secret:
// the private key never leaves the authenticator, and the server keeps its
// half of each ceremony.
//
// window.CustodiaPasskey.register(name) adds a passkey to the signed-in
// account; .signIn(challenge) answers a sign-in challenge with one. A
// button with id "add-passkey" registers one under the name in
// #passkey-name and reports in #passkey-status.
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
        var note = document.createElement("p");
        note.textContent = "Your recovery codes, shown this once. Keep them somewhere safe:";
        var list = document.createElement("ul");
        list.id = "passkey-recovery-codes";
        out.recovery_codes.forEach(function (c) {
          var li = document.createElement("li");
          li.textContent = c;
          list.appendChild(li);
        });
        status.appendChild(note);
        status.appendChild(list);
      }
    }).catch(function (err) {
      status.textContent = "The passkey was not added: " + (err && err.message ? err.message : "cancelled") + ".";
    }).then(function () {
      button.disabled = false;
    });
  });
})();
