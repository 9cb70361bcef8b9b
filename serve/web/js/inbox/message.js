// One message of a conversation, as an element built from its data:
// direction, status (with the reason of a failure), the `edited` label with
// its revisions on demand, attachments (images fetched with the bearer token
// and shown from an object URL; other files as download buttons) and an AI
// draft's Approve / Edit / Reject.

import { h, longTime, shortTime } from "../dom.js";
import { STATUS_LABEL } from "./common.js";

/** Object URLs of fetched images, kept per attachment id and freed on unmount. */
export class Files {
  constructor(api) {
    this.api = api;
    this.urls = new Map();
  }

  async url(id) {
    if (!this.urls.has(id)) {
      this.urls.set(id, this.api.request("GET", `/v1/attachments/${id}`, undefined, { raw: true })
        .then((resp) => resp.blob()).then((blob) => URL.createObjectURL(blob))
        .catch((error) => { this.urls.delete(id); throw error; }));
    }
    return this.urls.get(id);
  }

  async download(attachment) {
    const link = h("a", { href: await this.url(attachment.id),
                          download: attachment.name || "attachment" });
    document.body.append(link);
    link.click();
    link.remove();
  }

  close() {
    for (const pending of this.urls.values()) {
      pending.then((url) => URL.revokeObjectURL(url)).catch(() => {});
    }
    this.urls.clear();
  }
}

function attachmentNode(attachment, files, toast) {
  const name = attachment.name || attachment.kind || "file";
  if (!attachment.stored) {
    return h("div.attachment.missing", `${name}: ${attachment.error || "not downloaded yet"}`);
  }
  if ((attachment.mime_type || "").startsWith("image/")) {
    const img = h("img.attachment-image", { alt: name, loading: "lazy" });
    files.url(attachment.id).then((url) => { img.src = url; })
      .catch((error) => img.replaceWith(h("div.attachment.missing", `${name}: ${error.message}`)));
    return img;
  }
  const size = attachment.size ? ` (${Math.ceil(attachment.size / 1024)} KB)` : "";
  return h("button.attachment.secondary", { type: "button", onclick: () =>
    files.download(attachment).catch((error) => toast(error.message, "error")) },
  `Download ${name}${size}`);
}

/** The text shown: the newest revision's when it was edited (the stored
 * `content` stays as it first came). */
export function shownText(message) {
  const revisions = message.revisions || [];
  return revisions.length ? revisions[revisions.length - 1].content : message.content;
}

function revisionsNode(message) {
  const list = h("ol.revisions", { hidden: true },
    h("li", h("span.revision-time", "Original"), h("span.revision-text", message.content)),
    (message.revisions || []).map((r) => h("li",
      h("span.revision-time", longTime(r.edited_at)), h("span.revision-text", r.content))));
  const toggle = h("button.link.edited", { type: "button", "aria-expanded": "false",
    onclick: () => {
      list.hidden = !list.hidden;
      toggle.setAttribute("aria-expanded", String(!list.hidden));
    } }, "edited");
  return [toggle, list];
}

/** `actions`: { approve(message, content?), reject(message), retry(message) }. */
export function messageNode(message, { files, actions, toast, agents }) {
  const draft = message.status === "draft";
  const outgoing = !message.is_incoming;
  const text = h("div.message-text", shownText(message));
  const meta = h("div.message-meta",
    h("time", { datetime: message.created_at || "", title: longTime(message.created_at) },
      shortTime(message.created_at)));
  if (message.edited_at) meta.append(...revisionsNode(message));
  if (outgoing) {
    meta.append(h("span.message-status", STATUS_LABEL[message.status] || message.status));
  }
  const who = message.sender_type === "agent"
    ? agents.get(message.ai_agent_id)?.name || "AI agent"
    : message.is_incoming ? message.metadata?.sender?.name : null;
  const body = h("div.bubble",
    who ? h("div.message-sender", who) : null,
    draft ? h("div.draft-label", "AI draft: waiting for approval") : null,
    text,
    (message.attachments || []).map((a) => attachmentNode(a, files, toast)),
    meta);
  if (message.status === "failed") {
    body.append(h("div.message-error", { role: "alert" },
      `Not delivered: ${message.metadata?.error || message.local_error || "the channel refused it"}`,
      message.local_error ? h("button.link", { type: "button",
        onclick: () => actions.retry(message) }, "Retry") : null));
  }
  if (draft && !actions.readOnly) body.append(draftControls(message, text, actions));
  return h(`div.message.${outgoing ? "outgoing" : "incoming"}`, {
    dataset: { messageId: message.id, status: message.status } }, body);
}

function draftControls(message, text, actions) {
  const controls = h("div.draft-actions");
  const busy = (run) => async () => {
    for (const b of controls.querySelectorAll("button")) b.disabled = true;
    try {
      await run();
    } finally {
      for (const b of controls.querySelectorAll("button")) b.disabled = false;
    }
  };
  const buttons = () => [
    h("button.primary", { type: "button", onclick: busy(() => actions.approve(message)) },
      "Approve"),
    h("button", { type: "button", onclick: edit }, "Edit"),
    h("button.danger", { type: "button", onclick: busy(() => actions.reject(message)) },
      "Reject")];
  function edit() {
    const area = h("textarea.draft-editor", { "aria-label": "Edit the draft", rows: 4,
                                              value: message.content });
    text.hidden = true;
    controls.replaceChildren(area,
      h("button.primary", { type: "button", onclick: busy(() =>
        actions.approve(message, area.value.trim() || message.content)) }, "Approve edited"),
      h("button", { type: "button", onclick: () => {
        text.hidden = false;
        controls.replaceChildren(...buttons());
      } }, "Cancel"));
    area.focus();
  }
  controls.append(...buttons());
  return controls;
}
