// The contact panel: one contact's fields edited in place, its tags, its
// company, its deals with their stage, and its notes. The inbox's third
// column and the full-page #/contacts/<id> both mount it with
// `mountPanel(el, ctx, contactId)`.
//
// A field saves on blur or Enter and only when its value changed, with a
// PATCH of that field alone, so two people editing different fields of one
// contact do not overwrite each other. A `contact.updated` event for this
// contact (someone else, an agent, or our own save) reloads the panel's
// data, but an input being typed in keeps what the user is typing.

import { h, fill, money, notice, shortTime } from "../dom.js";

const FIELDS = [
  ["first_name", "First name", "text", "given-name"],
  ["last_name", "Last name", "text", "family-name"],
  ["email", "Email", "email", "email"],
  ["phone", "Phone", "tel", "tel"],
  ["telegram_username", "Telegram username", "text", "off"],
];

export function mountPanel(el, ctx, contactId) {
  const state = { contact: null, companies: [], deals: [], stages: new Map(), notes: [] };
  let alive = true;
  const base = `/v1/contacts/${contactId}`;
  const body = h("div.contact-body");
  const panel = h("section.contact-panel", { "aria-label": "Contact" }, body);
  fill(el, panel);
  fill(body, notice("status", "Loading contact…"));

  async function load() {
    try {
      const [contact, companies, deals, pipelines, notes] = await Promise.all([
        ctx.api.get(base),
        ctx.api.get("/v1/companies?limit=100"),
        ctx.api.get(`/v1/deals?contact_id=${contactId}&limit=100`),
        ctx.api.get("/v1/pipelines?limit=100"),
        ctx.api.get(`${base}/notes`),
      ]);
      if (!alive) return;
      Object.assign(state, { contact, companies: companies.data, deals: deals.data, notes });
      state.stages = new Map(pipelines.data.flatMap((p) => p.stages.map((s) => [s.id, s.name])));
      render();
    } catch (error) {
      if (!alive) return;
      fill(body, notice("error", error.status === 404 ? "This contact no longer exists."
        : `Could not load the contact: ${error.message}`,
      error.status === 404 ? null : { label: "Retry", run: load }));
    }
  }

  async function save(changes, control) {
    const status = panel.querySelector(".save-state");
    try {
      status.textContent = "Saving…";
      state.contact = await ctx.api.patch(base, changes);
      status.textContent = "Saved";
      control?.removeAttribute("aria-invalid");
      return true;
    } catch (error) {
      status.textContent = "";
      control?.setAttribute("aria-invalid", "true");
      ctx.toast(`Not saved: ${error.message}`, "error");
      return false;
    }
  }

  /** Re-render, keeping what is being typed: drafts (a note, a tag) and
   * the focused field survive a save elsewhere or a live update. */
  function render() {
    const focused = panel.contains(document.activeElement) ? document.activeElement : null;
    const drafts = [...panel.querySelectorAll("textarea, input[name=tag]")]
      .filter((node) => node.value).map((node) => [node.id, node.value]);
    if (focused?.tagName === "INPUT" && focused.id) drafts.push([focused.id, focused.value]);
    draw();
    for (const [id, value] of drafts) {
      const again = panel.querySelector(`#${CSS.escape(id)}`);
      if (again) again.value = value;
    }
    if (focused?.id) panel.querySelector(`#${CSS.escape(focused.id)}`)?.focus();
  }

  function clearDraft(id) {
    const node = panel.querySelector(`#${CSS.escape(id)}`);
    if (node) node.value = "";
  }

  function draw() {
    const c = state.contact;
    const name = [c.first_name, c.last_name].filter(Boolean).join(" ") || c.email
      || c.phone || (c.telegram_username ? `@${c.telegram_username}` : "Unnamed contact");
    fill(body,
      h("header.contact-head", h("h2", name),
        h("span.save-state", { role: "status", "aria-live": "polite" })),
      h("div.contact-fields", FIELDS.map(([key, label, type, auto]) => inline(key, label, type,
        auto))),
      tagsBlock(), companyBlock(), dealsBlock(), notesBlock());
  }

  function inline(key, label, type, auto) {
    const id = `contact-${contactId}-${key}`;
    const input = h("input", { id, name: key, type, autocomplete: auto,
                              value: state.contact[key] ?? "" });
    const commit = async () => {
      const value = input.value.trim();
      if (value === (state.contact[key] ?? "")) return;
      if (await save({ [key]: value === "" ? null : value }, input)) input.value = value;
    };
    input.addEventListener("blur", commit);
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") { event.preventDefault(); commit(); }
      if (event.key === "Escape") input.value = state.contact[key] ?? "";
    });
    return h("div.field", h("label", { for: id }, label), input);
  }

  function tagsBlock() {
    const tags = state.contact.tags || [];
    const id = `contact-${contactId}-tag`;
    const input = h("input", { id, name: "tag", autocomplete: "off", maxlength: "64",
                              placeholder: "new tag" });
    const add = async (event) => {
      event.preventDefault();
      const tag = input.value.trim();
      if (!tag || tags.includes(tag)) { input.value = ""; return; }
      // A live update may have re-drawn the form while saving: clear the one on screen.
      if (await save({ tags: [...tags, tag] }, input)) { clearDraft(id); render(); }
      panel.querySelector(`#${CSS.escape(id)}`)?.focus();
    };
    return h("section.contact-block", { "aria-labelledby": `${id}-title` },
      h("h3", { id: `${id}-title` }, "Tags"),
      tags.length ? h("ul.tags", tags.map((tag) => h("li.tag", tag,
        h("button.tag-remove", { type: "button", "aria-label": `Remove tag ${tag}`,
          onclick: async () => {
            if (await save({ tags: tags.filter((t) => t !== tag) })) render();
          } }, "×")))) : h("p.muted", "No tags."),
      h("form.inline-form", { onsubmit: add },
        h("label.visually-hidden", { for: id }, "Add a tag"), input,
        h("button", { type: "submit" }, "Add tag")));
  }

  function companyBlock() {
    const id = `contact-${contactId}-company`;
    const current = state.contact.company_id;
    const known = state.companies.some((co) => co.id === current);
    const picker = h("select", { id, name: "company_id", onchange: async () => {
      if (await save({ company_id: picker.value || null }, picker)) render();
    } },
    h("option", { value: "", selected: !current }, "— No company —"),
    state.companies.map((co) => h("option", { value: co.id, selected: co.id === current },
      co.name)),
    current && !known ? h("option", { value: current, selected: true }, "(another company)")
      : null);
    return h("section.contact-block",
      h("div.field", h("label", { for: id }, "Company"), picker),
      state.companies.length ? null : h("small.muted", "No companies yet."));
  }

  function dealsBlock() {
    return h("section.contact-block", { "aria-label": "Deals" }, h("h3", "Deals"),
      state.deals.length ? h("ul.contact-deals", state.deals.map((deal) => h("li",
        h("a", { href: `#/pipeline/${deal.pipeline_id}` }, deal.name),
        h("span.deal-stage", state.stages.get(deal.stage_id) || "no stage"),
        deal.value !== null ? h("span.deal-value", money(deal.value, deal.currency)) : null)))
        : h("p.muted", "No deals."));
  }

  function notesBlock() {
    const id = `contact-${contactId}-note`;
    const area = h("textarea", { id, name: "body", rows: "3", maxlength: "100000", required: true });
    const error = h("p.form-error", { role: "alert" });
    const submit = h("button.primary", { type: "submit" }, "Add note");
    const form = h("form.note-form", { onsubmit: async (event) => {
      event.preventDefault();
      if (!area.value.trim()) return;
      submit.disabled = true;
      error.textContent = "";
      try {
        const note = await ctx.api.post(`${base}/notes`, { body: area.value.trim() });
        state.notes = [note, ...state.notes.filter((n) => n.id !== note.id)];
        clearDraft(id);
        render();
        ctx.toast("Note added");
      } catch (failure) {
        error.textContent = failure.message;
        submit.disabled = false;
      }
    } }, h("label", { for: id }, "Add a note"), area, error, submit);
    return h("section.contact-block", { "aria-label": "Notes" }, h("h3", "Notes"), form,
      state.notes.length ? h("ul.notes", state.notes.map((note) => h("li.note",
        h("p", note.body), h("small.muted", shortTime(note.created_at)))))
        : h("p.muted", "No notes yet."));
  }

  const off = [
    ctx.live.on("contact.updated", (frame) => {
      if ((frame.entity_id || frame.data?.id) === contactId) load();
    }),
    ctx.live.on("note.created", (frame) => {
      if (frame.data?.contact_id === contactId && state.contact) load();
    }),
  ];
  load();
  return () => {
    alive = false;
    off.forEach((unsubscribe) => unsubscribe());
  };
}
