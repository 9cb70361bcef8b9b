// What a conversation writes with: the composer (Enter sends, Shift+Enter
// is a new line; the unsent text kept per chat in localStorage, so a session
// that expired and came back still has it; typing announced at most every
// 3 s), and, for a WhatsApp chat whose 24-hour window is closed, the picker
// of the number's approved templates, the only thing WhatsApp lets through.

import { fill, h, parseTime } from "../dom.js";

const TYPING_EVERY = 3000;
const WINDOW_MS = 24 * 3600 * 1000;
const DRAFT_KEY = "bidi.composer.";

/** Closed: the contact last wrote more than 24 hours ago (or never). The
 * chat's `whatsapp_window.closes_at` (the server's clock) is used until a
 * newer inbound message moves `last_inbound_at` past what it was computed from. */
export function windowClosed(chat) {
  if (!chat || chat.channel !== "whatsapp") return false;
  const inbound = parseTime(chat.last_inbound_at);
  let closes = inbound ? inbound.getTime() + WINDOW_MS : null;
  const server = parseTime(chat.whatsapp_window?.closes_at);
  if (server && (closes === null || server.getTime() >= closes)) closes = server.getTime();
  return closes === null || Date.now() > closes;
}

/** `send(text)` gets each message written. */
export function composer(ctx, chatId, send) {
  const key = DRAFT_KEY + chatId;
  let lastTyping = 0;
  const area = h("textarea.composer-input", { id: "composer-input", rows: 2,
    placeholder: "Write a reply… (Enter sends, Shift+Enter for a new line)",
    "aria-label": "Reply", value: localStorage.getItem(key) || "",
    oninput: () => {
      if (area.value) localStorage.setItem(key, area.value);
      else localStorage.removeItem(key);
      const now = Date.now();
      if (area.value && now - lastTyping >= TYPING_EVERY) {
        lastTyping = now;
        ctx.live.send({ type: "typing", chat_id: chatId });
      }
    },
    onkeydown: (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        submit();
      }
    } });
  function submit() {
    const text = area.value.trim();
    if (!text) return;
    area.value = "";
    localStorage.removeItem(key);
    send(text);
    area.focus();
  }
  return h("form.composer", { onsubmit: (event) => {
    event.preventDefault();
    submit();
  } }, area, h("button.primary", { type: "submit" }, "Send"));
}

/** `send(text, {template})` gets the template chosen. */
export function templatePicker(ctx, chat, send) {
  const select = h("select", { id: "template-select", "aria-label": "Template", disabled: true },
    h("option", "Loading templates…"));
  const button = h("button.primary", { type: "button", disabled: true, onclick: () => {
    const [name, language] = select.value.split("|");
    send(`[template ${name} (${language})]`, { template: { name, language, components: [] } });
  } }, "Send template");
  const error = h("div.template-error", { role: "alert" });
  ctx.api.get(`/v1/integrations/${chat.integration_id}/templates`).then((body) => {
    const usable = body.data.filter((t) => !t.status || t.status.toUpperCase() === "APPROVED");
    fill(select, usable.length ? usable.map((t) => h("option",
      { value: `${t.name}|${t.language || "en_US"}` }, `${t.name} (${t.language || "?"})`))
      : h("option", "No approved templates"));
    select.disabled = button.disabled = !usable.length;
  }).catch((failure) => {
    fill(select, h("option", "Unavailable"));
    error.textContent = `Could not load templates: ${failure.message}`;
  });
  return h("div.window-closed",
    h("p", "The 24-hour window of this WhatsApp conversation is closed: WhatsApp only lets"
      + " you send an approved template until the contact writes again."),
    h("div.template-row", h("label", { for: "template-select" }, "Template"), select, button),
    error);
}
