// Settings › Integrations: the org's channels, each switched on or off or
// deleted, and a create form per type whose inputs are named by the API's
// body paths (`config.imap.port`), so a 422 lands on the input it names.
// Creating answers what can be shown only once (an API inbox's signing
// secret, a web widget's secret and embed snippet) and where a provider
// must post (webhook URLs); both are shown under the form right away.

import { h, fill, longTime } from "../dom.js";
import { field, select, shownOnce, submitting, text } from "./forms.js";
import { confirmed, listInto } from "./settings.js";

const TLS = [["ssl", "SSL/TLS"], ["starttls", "STARTTLS"], ["none", "None (trusted network)"]];
const TYPES = ["api", "telegram", "whatsapp", "email", "webchat"];

const secret = (name, attrs = {}) => text(name, { type: "password", autocomplete: "new-password",
                                                  ...attrs });
const number = (name, attrs = {}) => h("input", { name, type: "number", ...attrs });

function server(prefix, label, port, withFolder) {
  return h("fieldset", h("legend", label),
    h("div.form-row",
      field("Host", text(`${prefix}.host`, { required: true })),
      field("Port", number(`${prefix}.port`, { required: true, min: "1", max: "65535",
                                               value: port })),
      field("Security", select(`${prefix}.tls`, TLS))),
    h("div.form-row",
      field("Username", text(`${prefix}.username`, { required: true })),
      field("Password", secret(`${prefix}.password`, { required: true }))),
    withFolder ? field("Folder", text(`${prefix}.folder`, { placeholder: "INBOX" })) : null);
}

/** Per type: its label, its fields, and how the form's values become the body. */
const FORMS = {
  api: {
    label: "API inbox",
    fields: () => [field("Callback URL", text("callback_url", { type: "url" }),
      "Where replies are POSTed, signed; optional.")],
  },
  telegram: {
    label: "Telegram bot",
    fields: () => [
      field("Bot token", secret("config.bot_token", { required: true }), "From @BotFather."),
      field("Mode", select("config.mode", [["webhook", "Webhook (needs a public URL)"],
        ["polling", "Polling"]])),
      field("Bot API server", text("config.api_base_url", { type: "url" }),
        "Only for a self-hosted Bot API server."),
    ],
  },
  whatsapp: {
    label: "WhatsApp number",
    fields: () => [
      field("Access token", secret("config.access_token", { required: true }),
        "A system user's token (Meta Business)."),
      field("App secret", secret("config.app_secret", { required: true })),
      field("Verify token", secret("config.verify_token", { required: true }),
        "What Meta echoes when it verifies the webhook URL."),
      h("div.form-row",
        field("Phone number ID", text("config.phone_number_id", { required: true })),
        field("WhatsApp Business Account ID", text("config.waba_id"), "For templates.")),
      h("div.form-row",
        field("Graph API URL", text("config.api_base_url", { type: "url" })),
        field("API version", text("config.api_version", { placeholder: "v23.0" }))),
    ],
  },
  email: {
    label: "Mailbox",
    fields: () => [
      field("Address", text("config.address", { type: "email", required: true })),
      server("config.imap", "IMAP (incoming)", "993", true),
      server("config.smtp", "SMTP (outgoing)", "465", false),
      h("div.form-row",
        field("Reply domain", text("config.reply_domain"), "Optional."),
        field("Days of mail to import", number("config.import_days", { min: "0", max: "365" }))),
    ],
  },
  webchat: {
    label: "Web widget",
    fields: () => [
      field("Allowed origins", h("textarea", { name: "config.allowed_origins", rows: "3",
        required: true, placeholder: "https://www.example.com" }),
      "One per line: the sites that may embed the widget."),
      field("Verify visitors' identity", h("input", { type: "checkbox",
        name: "config.identity_verification" }),
      "Your site signs the visitor's id with the widget's secret."),
    ],
    shape: (body) => {
      const origins = String(body.config?.allowed_origins || "").split(/\s+/).filter(Boolean);
      return { ...body, config: { ...body.config, allowed_origins: origins } };
    },
  },
};

export function mount(root, ctx) {
  const list = h("div");
  const revealed = h("div.revealed", { "aria-live": "polite" });
  const holder = h("div");
  const kind = select("type", TYPES.map((t) => [t, FORMS[t].label]), { id: "integration-type" });
  kind.addEventListener("change", () => showForm(kind.value));
  const reload = () => listInto(list,
    async () => (await ctx.api.get("/v1/integrations?limit=100")).data, row,
    "No integrations yet: connect a channel below.");

  function row(item) {
    const toggle = h("input", { type: "checkbox", id: `active-${item.id}`, checked: item.is_active });
    toggle.addEventListener("change", async () => {
      try {
        await ctx.api.patch(`/v1/integrations/${item.id}`, { is_active: toggle.checked });
        ctx.toast(`${item.name || item.type} switched ${toggle.checked ? "on" : "off"}`);
        reload();
      } catch (error) {
        toggle.checked = !toggle.checked;
        ctx.toast(error.message, "error");
      }
    });
    const status = item.error
      ? h("small.status-error", `Error: ${item.error} (${longTime(item.error_at)})`)
      : h("small", item.is_active ? (item.last_sync_at ? `Last sync ${longTime(item.last_sync_at)}`
        : "Working") : "Switched off");
    return h("li.settings-row", { dataset: { integrationId: item.id } },
      h("div.row-main", h("strong", item.name || "(unnamed)"),
        h("small", FORMS[item.type]?.label || item.type), status),
      h("div.field.check", toggle, h("label", { for: toggle.id }, "Active")),
      h("button.danger", { type: "button", onclick: () => confirmed(ctx,
        `Delete the integration “${item.name || item.type}”? Its channel stops at once.`,
        () => ctx.api.del(`/v1/integrations/${item.id}`), "Integration deleted").then(
        (ok) => ok && reload()) }, "Delete"));
  }

  function showForm(type) {
    const spec = FORMS[type];
    const form = h("form.settings-form", { "aria-label": `New ${spec.label}` },
      field("Name", text("name", { required: true, maxlength: "255" })),
      spec.fields(), h("p.form-error", { role: "alert" }),
      h("button.primary", { type: "submit" }, `Create ${spec.label}`));
    form.addEventListener("submit", submitting(form, async (values) => {
      const body = (spec.shape || ((b) => b))({ type, ...values });
      const made = await ctx.api.post("/v1/integrations", body);
      fill(revealed, created(made));
      showForm(type); // a fresh form: its defaults (ports) back, no secret left in it
      ctx.toast(`${spec.label} “${made.name}” created`);
      reload();
    }, TYPES));
    fill(holder, form);
  }

  fill(root, h("section", { "aria-labelledby": "integrations-title" },
    h("h2", { id: "integrations-title" }, "Integrations"), list,
    h("h3", "Connect a channel"), field("Type", kind), holder, revealed));
  showForm(kind.value);
  reload();
}

/** What creating answered that the list never shows again. */
function created(made) {
  const parts = [];
  if (made.secret) parts.push(shownOnce(`Signing secret of “${made.name}”`, made.secret));
  if (made.embed) {
    parts.push(h("div.shown-once", h("strong", "Embed snippet"),
      h("small", "Paste it before </body> on your site."),
      h("textarea.embed", { readonly: true, rows: "4", "aria-label": "Embed snippet",
                            value: typeof made.embed === "string" ? made.embed
                              : JSON.stringify(made.embed, null, 2) })));
  }
  const urls = [["Inbound URL", made.inbound_url], ["Webhook URL", made.webhook_url],
    ["App webhook URL", made.app_webhook_url]].filter(([, url]) => url);
  if (urls.length) {
    parts.push(h("dl.urls", urls.map(([label, url]) => [h("dt", label), h("dd", h("code", url))])));
  }
  return parts.length ? parts : h("p", "Created.");
}
