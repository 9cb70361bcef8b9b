// Small pieces the inbox's parts share: the channel badge, message ordering
// and status ranks.

import { h } from "../dom.js";

const CHANNELS = {
  api: ["A", "API"], telegram: ["T", "Telegram"], whatsapp: ["W", "WhatsApp"],
  email: ["E", "Email"], webchat: ["C", "Web chat"],
};

export function channelName(channel) {
  return CHANNELS[channel]?.[1] || channel || "Unknown";
}

/** A letter badge per channel, coloured by CSS (`data-channel`). */
export function channelBadge(channel) {
  const [letter, name] = CHANNELS[channel] || ["?", channel || "Unknown"];
  return h("span.channel-badge", { dataset: { channel: channel || "" }, title: name,
    role: "img", "aria-label": name }, letter);
}

/** The server orders a chat's messages by (created_at, id); timestamps come
 * with microseconds, with or without a zone (all UTC), so they are compared
 * as fixed-width text, never rounded to milliseconds. */
export function orderKey(message) {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?/.exec(message.created_at || "");
  const at = m ? m[1] + (m[2] || ".").padEnd(7, "0").slice(0, 7) : "9999";
  return `${at}|${message.id}`;
}

// Statuses only move forward (as bidi_status_advances() in SQL): a replayed
// or late event never moves a message back.
const RANK = { draft: 0, pending: 1, sent: 2, delivered: 3, read: 4 };

export function advances(from, to) {
  if (from === to) return false;
  if (to === "failed") return from === "pending" || from === "sent" || from === undefined;
  if (to === "rejected") return from === "draft";
  if (from === "failed" || from === "rejected") return false;
  return (RANK[to] ?? 0) > (RANK[from] ?? -1);
}

export const STATUS_LABEL = {
  draft: "AI draft", pending: "Sending…", sent: "Sent", delivered: "Delivered", read: "Read",
  failed: "Failed", rejected: "Rejected",
};

export function uuid() {
  return crypto.randomUUID();
}
