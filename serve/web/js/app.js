// The inbox's shell: sign-in, the header (navigation, org switcher, the
// live connection's state, sign out) and a hash router that mounts one view
// at a time. A view is a module under ./views/ exporting
// `mount(root, ctx, params)`, which returns an unmount function (or nothing),
// or `{ unmount, update }`: then a route change within the same view (another
// chat of the inbox) calls `update(params)` instead of mounting it anew.
// A session that ends (refresh refused) shows sign-in over the same route;
// signing in again comes back to it, with whatever the views kept
// (composer drafts live in localStorage, see views/inbox.js).

import { ApiError, publicPost, Session } from "./api.js";
import { fill, h, toast } from "./dom.js";
import { Live } from "./live.js";

const ROUTES = [
  { pattern: /^#\/inbox(?:\/([0-9a-f-]{36}))?$/, view: "inbox", nav: "inbox",
    params: (m) => ({ chatId: m[1] || null }) },
  { pattern: /^#\/pipeline(?:\/([0-9a-f-]{36}))?$/, view: "pipeline", nav: "pipeline",
    params: (m) => ({ pipelineId: m[1] || null }) },
  { pattern: /^#\/contacts\/([0-9a-f-]{36})$/, view: "contacts", nav: "inbox",
    params: (m) => ({ contactId: m[1] }) },
  { pattern: /^#\/settings(?:\/([a-z-]+))?$/, view: "settings", nav: "settings",
    params: (m) => ({ section: m[1] || "integrations" }) },
  { pattern: /^#\/invite\/([A-Za-z0-9_%-]+)$/, view: "invite", nav: null,
    params: (m) => ({ token: decodeURIComponent(m[1]) }) },
];
const NAV = [["inbox", "Inbox"], ["pipeline", "Pipeline"], ["settings", "Settings"]];

const root = document.getElementById("app");
const session = new Session();
const live = new Live(session);
let unmount = null;
let mounted = null; // { view, update } of the view on screen
let shell = null;

const ctx = {
  session,
  api: session,
  live,
  toast,
  navigate: (hash) => { if (location.hash === hash) route(); else location.hash = hash; },
  get me() { return { user: session.user, organization: session.organization,
                      memberships: session.memberships }; },
  /** Into another of the user's orgs: a new session for it, the shell redrawn. */
  switchOrg: async (organizationId, hash = "#/inbox") => {
    session.adopt(await session.post("/v1/auth/switch-org", { organization_id: organizationId }));
    live.stop();
    live.position = null;
    live.seen.clear();
    history.replaceState(null, "", hash);
    await enter();
  },
};

session.onSignedOut = () => {
  live.stop();
  showSignIn();
};

async function boot() {
  if (!session.signedIn) {
    showSignIn();
    return;
  }
  try {
    await session.refresh();
    await enter();
  } catch (error) {
    if (error instanceof ApiError && error.status === 0) {
      fill(root, h("div.notice.error", { role: "alert" }, error.message,
        h("button.link", { type: "button", onclick: boot }, "Retry")));
    } else {
      showSignIn();
    }
  }
}

async function enter() {
  const me = await session.get("/v1/me");
  session.user = me.user;
  session.organization = me.organization;
  session.memberships = me.memberships;
  renderShell();
  live.start();
  if (!location.hash || location.hash === "#" || location.hash === "#/") {
    history.replaceState(null, "", "#/inbox");
  }
  route();
}

function renderShell() {
  mounted = null; // a new shell: the view is mounted anew, never updated in place
  const state = h("span.live-state", { role: "status", "aria-live": "polite",
                                        title: "Live updates" });
  const setState = (value) => {
    state.dataset.state = value;
    state.textContent = { live: "Live", connecting: "Connecting…", offline: "Offline" }[value];
  };
  setState(live.state);
  live.on("state", setState);
  const orgs = h("select.org-switcher", { "aria-label": "Organization", onchange: switchOrg },
    session.memberships.map((m) => h("option", { value: m.id, selected: m.id ===
      session.organization.id }, `${m.name} (${m.role})`)));
  const nav = h("nav.main-nav", { "aria-label": "Main" },
    NAV.map(([key, label]) => h("a", { href: `#/${key}`, dataset: { nav: key } }, label)));
  const main = h("main.view", { id: "view", tabindex: "-1" });
  shell = { main, nav };
  fill(root, h("header.topbar",
    h("a.brand", { href: "#/inbox", "aria-label": "Bidi inbox" }, "Bidi"),
    nav, h("div.spacer"), state, orgs,
    h("span.user-name", session.user?.name || session.user?.email || ""),
    h("button.secondary", { type: "button", onclick: () => session.signOut() }, "Sign out")),
  main);
  root.removeAttribute("aria-busy");
}

async function switchOrg(event) {
  try {
    await ctx.switchOrg(event.target.value);
  } catch (error) {
    toast(error.message, "error");
  }
}

async function route() {
  if (!shell) return;
  const hash = location.hash || "#/inbox";
  const found = ROUTES.map((r) => [r, hash.match(r.pattern)]).find(([, m]) => m);
  if (found && mounted?.update && mounted.view === found[0].view) {
    mounted.update(found[0].params(found[1]));
    return;
  }
  mounted = null;
  if (unmount) {
    try { unmount(); } catch (error) { console.error(error); }
    unmount = null;
  }
  for (const link of shell.nav.querySelectorAll("a")) {
    if (found && link.dataset.nav === found[0].nav) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (!found) {
    fill(shell.main, h("div.notice.error", { role: "alert" }, "No such page. ",
      h("a", { href: "#/inbox" }, "Go to the inbox")));
    return;
  }
  const [spec, match] = found;
  const target = h("div.view-body");
  fill(shell.main, target);
  try {
    const module = await import(`./views/${spec.view}.js`);
    const result = (await module.mount(target, ctx, spec.params(match))) || null;
    if (typeof result === "function" || result === null) {
      unmount = result;
    } else {
      unmount = result.unmount;
      mounted = { view: spec.view, update: result.update };
    }
  } catch (error) {
    console.error(error);
    fill(target, h("div.notice.error", { role: "alert" }, `This page failed to load: ${
      error.message}`));
  }
}

function showSignIn() {
  shell = null;
  mounted = null;
  if (unmount) { try { unmount(); } catch { /* leaving anyway */ } unmount = null; }
  const email = h("input", { id: "signin-email", type: "email", name: "email", required: true,
                             autocomplete: "username" });
  const password = h("input", { id: "signin-password", type: "password", name: "password",
                                required: true, autocomplete: "current-password" });
  const code = h("input", { id: "signin-code", name: "code", inputmode: "numeric",
                            autocomplete: "one-time-code", maxlength: "32" });
  const codeRow = h("div.field", { hidden: true },
    h("label", { for: "signin-code" }, "Authentication code"), code,
    h("small", "From your authenticator app, or a recovery code."));
  const error = h("p.form-error", { role: "alert" });
  const submit = h("button.primary", { type: "submit" }, "Sign in");
  const form = h("form.signin", { "aria-labelledby": "signin-title", onsubmit: async (event) => {
    event.preventDefault();
    error.textContent = "";
    submit.disabled = true;
    try {
      const body = { email: email.value.trim(), password: password.value };
      if (code.value.trim()) body.totp_code = code.value.trim();
      session.adopt(await publicPost("/v1/auth/login", body));
      await enter();
    } catch (failure) {
      if (failure.code === "mfa_required") {
        codeRow.hidden = false;
        code.focus();
      }
      error.textContent = failure.message;
    } finally {
      submit.disabled = false;
    }
  } },
  h("h1", { id: "signin-title" }, "Sign in to Bidi"),
  h("div.field", h("label", { for: "signin-email" }, "Email"), email),
  h("div.field", h("label", { for: "signin-password" }, "Password"), password),
  codeRow, error, submit,
  h("div.signin-alt", { id: "signin-alt" }),
  h("div.signin-alt", h("button.link", { type: "button", onclick: async () => {
    const { registerForm } = await import("./register.js");
    fill(root, h("div.signin-page", registerForm({ session, enter, back: showSignIn })));
    document.getElementById("register-name")?.focus();
  } }, "Create an account")));
  fill(root, h("div.signin-page", form));
  root.removeAttribute("aria-busy");
  import("./signin_extra.js").then((m) => m.mount(form.querySelector(".signin-alt"), {
    session, enter })).catch(() => {});
  email.focus();
}

window.addEventListener("hashchange", route);
boot();
