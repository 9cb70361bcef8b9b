// #/settings/<section>: a sub-nav and one section at a time. Integrations
// and agents have modules of their own (settings_integrations.js,
// settings_agents.js); members and API keys are small enough to live here.
// Every section follows one pattern: a list read from the API (with its
// loading, empty and error states), a form whose errors show next to the
// field the API names, and secrets (an invitation token, an API key) shown
// once right after they are made, because the API cannot show them again.

import { h, fill, notice, shortTime } from "../dom.js";
import { field, select, shownOnce, submitting, text } from "./forms.js";

const SECTIONS = [
  ["integrations", "Integrations"],
  ["agents", "Agents"],
  ["members", "Members"],
  ["api-keys", "API keys"],
];
const ROLES = [["viewer", "Viewer"], ["bidi", "Member"], ["admin", "Admin"], ["owner", "Owner"]];
const SCOPES = ["crm:read", "crm:write", "chats:read", "chats:write", "org:read",
  "members:manage", "integrations:manage", "agents:manage", "webhooks:manage",
  "apikeys:manage", "audit:read", "org:manage"];

export async function mount(root, ctx, params) {
  const known = SECTIONS.some(([key]) => key === params.section);
  const content = h("div.settings-content", { id: "settings-content" });
  const nav = h("nav.settings-nav", { "aria-label": "Settings" },
    h("ul", SECTIONS.map(([key, label]) => h("li", h("a", { href: `#/settings/${key}`,
      "aria-current": key === params.section ? "page" : null }, label)))));
  fill(root, h("div.settings", nav, content));
  if (!known) {
    fill(content, notice("error", "No such settings section."));
    return null;
  }
  const section = {
    integrations: () => import("./settings_integrations.js").then((m) => m.mount),
    agents: () => import("./settings_agents.js").then((m) => m.mount),
    members: async () => members,
    "api-keys": async () => apiKeys,
  }[params.section];
  return (await section())(content, ctx);
}

/** A section's list: loading, error with retry, empty, or the rows. */
export async function listInto(node, load, row, empty) {
  fill(node, notice("status", "Loading…"));
  try {
    const items = await load();
    fill(node, items.length ? h("ul.settings-list", items.map(row)) : notice("status", empty));
  } catch (error) {
    fill(node, notice("error", `Could not load: ${error.message}`,
      { label: "Retry", run: () => listInto(node, load, row, empty) }));
  }
}

/** Run `action` after the user confirms, toasting how it went. */
export async function confirmed(ctx, question, action, done) {
  if (!window.confirm(question)) return false;
  try {
    await action();
    ctx.toast(done);
    return true;
  } catch (error) {
    ctx.toast(error.message, "error");
    return false;
  }
}

function members(root, ctx) {
  const list = h("div");
  const invites = h("div");
  const revealed = h("div.revealed", { "aria-live": "polite" });
  const me = ctx.me.user?.id;
  const reload = () => {
    listInto(list, async () => (await ctx.api.get("/v1/members?limit=100")).data, (m) => {
      const role = select("role", ROLES, { id: `role-${m.user_id}` });
      role.value = m.role;
      role.addEventListener("change", async () => {
        try {
          await ctx.api.patch(`/v1/members/${m.user_id}`, { role: role.value });
          ctx.toast(`${m.name || m.email} is now ${role.value}`);
        } catch (error) {
          role.value = m.role;
          ctx.toast(error.message, "error");
        }
      });
      return h("li.settings-row",
        h("div.row-main", h("strong", m.name || m.email), h("small", m.email)),
        h("label.visually-hidden", { for: role.id }, `Role of ${m.email}`), role,
        m.user_id === me ? h("small.muted", "you") : h("button.danger", { type: "button",
          onclick: () => confirmed(ctx, `Remove ${m.email} from the organization?`,
            () => ctx.api.del(`/v1/members/${m.user_id}`), "Member removed").then(
            (ok) => ok && reload()) }, "Remove"));
    }, "No members.");
    listInto(invites, () => ctx.api.get("/v1/members/invitations"), (i) =>
      h("li.settings-row", h("div.row-main", h("strong", i.email),
        h("small", `${i.role} · expires ${shortTime(i.expires_at)}`))), "No pending invitations.");
  };
  const form = h("form.settings-form", { "aria-label": "Invite a member" },
    h("h3", "Invite a member"),
    h("div.form-row", field("Email", text("email", { type: "email", required: true })),
      field("Role", select("role", ROLES.filter(([r]) => r !== "owner")))),
    h("p.form-error", { role: "alert" }),
    h("button.primary", { type: "submit" }, "Send invitation"));
  form.querySelector("select").value = "bidi";
  form.addEventListener("submit", submitting(form, async (body) => {
    const made = await ctx.api.post("/v1/members/invitations", body);
    const link = `${location.origin}/#/invite/${encodeURIComponent(made.token)}`;
    fill(revealed, shownOnce(`Invitation link for ${made.email}`, link),
      h("small", `Send it to ${made.email}: they open it, sign in (or create an account)`
        + " with that email and join before it expires."));
    form.reset();
    form.querySelector("select").value = "bidi";
    ctx.toast("Invitation created");
    reload();
  }));
  fill(root, h("section", { "aria-labelledby": "members-title" },
    h("h2", { id: "members-title" }, "Members"), list, form, revealed,
    h("h3", "Pending invitations"), invites));
  reload();
}

function apiKeys(root, ctx) {
  const list = h("div");
  const revealed = h("div.revealed", { "aria-live": "polite" });
  const reload = () => listInto(list,
    async () => (await ctx.api.get("/v1/api-keys?limit=100")).data, (k) => h("li.settings-row",
      h("div.row-main", h("strong", k.name),
        h("small", `bidi_${k.prefix}_… · ${k.scopes.join(", ")}`),
        h("small", k.revoked_at ? `revoked ${shortTime(k.revoked_at)}`
          : k.last_used_at ? `last used ${shortTime(k.last_used_at)}` : "never used")),
      k.revoked_at ? null : h("button.danger", { type: "button",
        onclick: () => confirmed(ctx, `Revoke the key “${k.name}”? Whatever uses it stops working.`,
          () => ctx.api.del(`/v1/api-keys/${k.id}`), "Key revoked").then((ok) => ok && reload()) },
      "Revoke")), "No API keys yet.");
  const scopes = h("fieldset.scopes", h("legend", "Scopes"), SCOPES.map((scope) =>
    field(scope, h("input", { type: "checkbox", value: scope, dataset: { skip: "" },
      checked: ["crm:read"].includes(scope) }))));
  const form = h("form.settings-form", { "aria-label": "Create an API key" },
    h("h3", "Create an API key"), field("Name", text("name", { required: true, maxlength: "255" })),
    scopes, h("p.form-error", { role: "alert" }),
    h("button.primary", { type: "submit" }, "Create key"));
  form.addEventListener("submit", submitting(form, async (body) => {
    body.scopes = [...scopes.querySelectorAll("input:checked")].map((box) => box.value);
    const made = await ctx.api.post("/v1/api-keys", body);
    fill(revealed, shownOnce(`API key “${made.name}”`, made.key),
      h("small", "Send it as the X-API-Key header."));
    form.reset();
    ctx.toast("API key created");
    reload();
  }));
  fill(root, h("section", { "aria-labelledby": "keys-title" },
    h("h2", { id: "keys-title" }, "API keys"), form, revealed, list));
  reload();
}
