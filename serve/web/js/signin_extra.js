// "Sign in with Google" under the sign-in form, only when the server has
// Google configured (its start route answers 404 otherwise, and then nothing
// is shown). The flow is the server's: start gives the authorization URL (and
// sets a cookie binding the state to this browser); Google sends the browser
// back to /v1/auth/oauth/google/callback, which serves this page; here the
// code and state are posted to the callback route for a session, and the
// address goes back to `/`. An account with TOTP on answers `mfa_required`
// with a token to present with a code.

import { ApiError, publicPost } from "./api.js";
import { h } from "./dom.js";

const STATE_LIFE = 9 * 60_000; // under the server's 10 minutes

async function start() {
  const resp = await fetch("/v1/auth/oauth/google/start", { credentials: "same-origin" });
  if (!resp.ok) throw new ApiError(resp.status, "http_" + resp.status, "Google sign-in failed");
  return { ...(await resp.json()), at: Date.now() };
}

export async function mount(el, { session, enter }) {
  const params = new URLSearchParams(location.search);
  if (params.get("code") && params.get("state")) {
    await finish(el, session, enter, params);
    return;
  }
  if (params.get("error")) {
    el.append(h("p.form-error", { role: "alert" }, `Google sign-in failed: ${params.get("error")}`));
    history.replaceState(null, "", "/");
  }
  let flow;
  try {
    flow = await start();
  } catch {
    return; // not configured (404) or unreachable: no button
  }
  el.append(h("button.secondary.google-signin", { type: "button", onclick: async () => {
    try {
      if (Date.now() - flow.at > STATE_LIFE) flow = await start();
      location.assign(flow.authorization_url);
    } catch (error) {
      el.append(h("p.form-error", { role: "alert" }, error.message));
    }
  } }, "Sign in with Google"));
}

async function finish(el, session, enter, params) {
  const status = h("p.notice.status", { role: "status" }, "Signing in with Google…");
  el.append(status);
  const done = async (body) => {
    session.adopt(body);
    history.replaceState(null, "", "/#/inbox");
    await enter();
  };
  try {
    await done(await publicPost("/v1/auth/oauth/google/callback",
      { code: params.get("code"), state: params.get("state") }));
  } catch (error) {
    history.replaceState(null, "", "/");
    if (error.code === "mfa_required" && error.details?.mfa_token) {
      status.remove();
      el.append(challenge(error.details.mfa_token, done));
      return;
    }
    status.textContent = `Google sign-in failed: ${error.message}`;
    status.className = "form-error";
    status.setAttribute("role", "alert");
  }
}

function challenge(token, done) {
  const code = h("input", { id: "google-mfa-code", inputmode: "numeric", required: true,
                            autocomplete: "one-time-code", maxlength: "32" });
  const error = h("p.form-error", { role: "alert" });
  const box = h("div.field", h("label", { for: "google-mfa-code" }, "Authentication code"), code,
    error, h("button.primary", { type: "button", onclick: async () => {
      error.textContent = "";
      try {
        await done(await publicPost("/v1/auth/mfa/challenge",
          { mfa_token: token, code: code.value.trim() }));
      } catch (failure) {
        error.textContent = failure.message;
      }
    } }, "Verify"));
  queueMicrotask(() => code.focus());
  return box;
}
