// One open conversation: its history (newest page first, older pages loaded
// as the list scrolls up, the scroll position kept), live messages upserted
// by id (a replay after a reconnect, or an event racing the send's answer,
// never shows a message twice), statuses that only move forward, typing,
// mark-read, and the composer.
//
// A reply is sent with an Idempotency-Key made per message and reused by a
// retry, shown at once as `pending` under a local id, and given the
// server's id when it answers (or when the `message.created` event comes
// first). The composer itself is ./composer.js.

import { fill, h, notice } from "../dom.js";
import { advances, orderKey, uuid } from "./common.js";
import { ChatHeader } from "./header.js";
import { composer, templatePicker, windowClosed } from "./composer.js";
import { Files, messageNode } from "./message.js";

const PAGE = 50;
const TYPING_SHOWN = 5000;


// Members' names for "… is typing", read once per page (a name missing from
// it, someone who joined since, reads them again at most once a minute).
let members = null;
let membersRead = 0;
async function memberName(ctx, userId) {
  if (!userId) return null;
  if ((!members || !members.has(userId)) && Date.now() - membersRead > 60_000) {
    membersRead = Date.now();
    try {
      const page = await ctx.api.get("/v1/members?limit=100");
      members = new Map(page.data.map((m) => [m.user_id || m.id, m.name || m.email]));
    } catch {
      members = members || new Map();
    }
  }
  return members?.get(userId) || null;
}

export class Conversation {
  constructor(ctx, chatId, { agents, onBack, onChat }) {
    this.ctx = ctx;
    this.chatId = chatId;
    this.agents = agents; // Map id -> agent
    this.onBack = onBack;
    this.onChat = onChat;
    this.messages = new Map(); // id -> message
    this.nodes = new Map(); // id -> element
    this.cursor = null;
    this.loadingOlder = false;
    this.alive = true;
    this.files = new Files(ctx.api);
    this.log = h("div.messages", { role: "log", "aria-live": "polite",
      "aria-label": "Messages", tabindex: "0" });
    this.olderStatus = h("div.older-status");
    this.scroller = h("div.message-scroll", { onscroll: () => this.onScroll() },
      this.olderStatus, this.log);
    this.typing = h("div.typing", { "aria-live": "polite" });
    this.banner = h("div.live-banner", { role: "status" });
    this.headerSlot = h("div.header-slot");
    this.composerSlot = h("div.composer-slot");
    this.el = h("section.conversation", { "aria-label": "Conversation" },
      this.headerSlot, this.banner, this.scroller, this.typing, this.composerSlot);
    this.actions = {
      // A viewer reads drafts but cannot decide them (the API would say 403).
      readOnly: ctx.me.organization?.role === "viewer",
      approve: (m, content) => this.decide(m, true, content),
      reject: (m) => this.decide(m, false),
      retry: (m) => this.deliver(m),
    };
    this.offState = ctx.live.on("state", (state) => this.showLive(state));
    this.offTyping = ctx.live.on("frame:typing", (frame) => this.onTyping(frame));
    this.onVisible = () => {
      if (document.visibilityState === "visible" && this.chat?.unread_count) this.markRead();
    };
    document.addEventListener("visibilitychange", this.onVisible);
    ctx.live.watchChat(chatId);
    this.showLive(ctx.live.state);
  }

  async load() {
    fill(this.log, notice("status", "Loading messages…"));
    try {
      const [chat, page] = await Promise.all([
        this.ctx.api.get(`/v1/chats/${this.chatId}`),
        this.ctx.api.get(`/v1/chats/${this.chatId}/messages?limit=${PAGE}`)]);
      if (!this.alive) return;
      this.chat = chat;
      this.onChat(chat);
      this.log.replaceChildren();
      this.cursor = page.next_cursor;
      for (const message of page.data) this.upsert(message);
      if (!page.data.length) this.log.append(h("div.notice.status.empty-chat", "No messages yet."));
      this.renderHeader();
      this.renderComposer();
      this.toBottom();
      this.markRead();
    } catch (error) {
      if (!this.alive) return;
      fill(this.log, notice("error", error.status === 404 ? "This conversation does not exist."
        : `Could not load the conversation: ${error.message}`,
      error.status === 404 ? null : { label: "Retry", run: () => this.load() }));
    }
  }

  renderHeader() {
    this.header = new ChatHeader(this.ctx, this.chat, [...this.agents.values()], {
      onBack: this.onBack, onChanged: (chat) => { this.chat = chat; this.onChat(chat); } });
    fill(this.headerSlot, this.header.el, this.header.approvals);
  }

  showLive(state) {
    if (state === "live") {
      if (this.wasDown) this.banner.textContent = "";
      this.wasDown = false;
      this.banner.hidden = true;
    } else {
      this.wasDown = true;
      this.banner.hidden = false;
      this.banner.textContent = state === "connecting" ? "Reconnecting… new messages will catch up."
        : "Offline: new messages will show when the connection is back.";
    }
  }

  // ----- messages -------------------------------------------------------

  /** Insert or update by id, in (created_at, id) order. */
  upsert(message) {
    const old = this.messages.get(message.id);
    let merged = message;
    if (old) {
      merged = { ...old, ...message };
      if (!advances(old.status, message.status) && old.status !== message.status
          && !(old.local_key && message.status === "pending")) {
        merged.status = old.status; // a replayed or stale copy never moves it back
      }
      merged.metadata = { ...(old.metadata || {}), ...(message.metadata || {}) };
    }
    this.messages.set(merged.id, merged);
    const node = messageNode(merged, { files: this.files, actions: this.actions,
      toast: this.ctx.toast, agents: this.agents });
    const existing = this.nodes.get(merged.id);
    this.nodes.set(merged.id, node);
    if (existing) {
      existing.replaceWith(node);
      return node;
    }
    this.log.querySelector(".empty-chat")?.remove();
    const key = orderKey(merged);
    let after = this.log.lastElementChild;
    while (after && after.dataset.messageId
           && orderKey(this.messages.get(after.dataset.messageId)) > key) {
      after = after.previousElementSibling;
    }
    if (after && after.dataset.messageId) after.after(node);
    else this.log.prepend(node);
    return node;
  }

  nearBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 120;
  }

  toBottom() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  onScroll() {
    if (this.scroller.scrollTop < 150) this.older();
  }

  async older() {
    if (this.loadingOlder || !this.cursor) return;
    this.loadingOlder = true;
    fill(this.olderStatus, notice("status", "Loading older messages…"));
    try {
      const page = await this.ctx.api.get(`/v1/chats/${this.chatId}/messages?limit=${PAGE
      }&before=${encodeURIComponent(this.cursor)}`);
      if (!this.alive) return;
      // Keep what is on screen where it is: grow the content above it.
      const before = this.scroller.scrollHeight;
      const top = this.scroller.scrollTop;
      for (const message of page.data) this.upsert(message);
      this.cursor = page.next_cursor;
      this.olderStatus.replaceChildren();
      this.scroller.scrollTop = top + (this.scroller.scrollHeight - before);
    } catch (error) {
      fill(this.olderStatus, notice("error", `Could not load older messages: ${error.message}`,
        { label: "Retry", run: () => this.older() }));
    } finally {
      this.loadingOlder = false;
    }
    if (this.cursor && this.scroller.scrollTop < 150) this.older();
  }

  /** A live event of this chat. */
  onEvent(frame) {
    const data = frame.data || {};
    const type = frame.event_type;
    if (type === "message.received" || type === "message.created") {
      const local = type === "message.created" && !this.messages.has(data.id)
        ? this.localFor(data) : null;
      if (local) this.adopt(local, data.id);
      // An agent's run is ending here: it may have held tool calls for a
      // person. Its record is written just after its reply (and no event
      // says so), hence a second look.
      if (data.sender_type === "agent") {
        this.header?.loadApprovals();
        clearTimeout(this.approvalsTimer);
        this.approvalsTimer = setTimeout(() => this.header?.loadApprovals(), 2000);
      }
      const stick = this.nearBottom();
      this.upsert({ attachments: [], revisions: [], metadata: {}, ...data });
      if (stick || !data.is_incoming) this.toBottom();
      if (type === "message.received") {
        this.typing.textContent = "";
        // The payload has no attachments: the stored row has them.
        if (data.attachments === undefined) this.refetchSoon();
        if (document.visibilityState === "visible") this.markRead();
        else if (this.chat) this.chat.unread_count = (this.chat.unread_count || 0) + 1;
        if (this.chat) {
          // The contact wrote: a closed WhatsApp window is open again.
          this.chat.last_inbound_at = data.created_at || new Date().toISOString();
          this.renderComposer();
        }
      }
    } else if (type === "message.status.updated" || type === "message.sent") {
      const message = this.messages.get(data.id);
      if (message && data.status && advances(message.status, data.status)) {
        const { id, chat_id: _, status, ...extra } = data;
        this.upsert({ ...message, id, status, metadata: { ...message.metadata, ...extra } });
      }
    } else if (type === "message.edited") {
      const message = this.messages.get(data.id);
      if (message) {
        const revisions = [...(message.revisions || [])];
        if (!revisions.some((r) => r.edited_at === data.edited_at)) {
          revisions.push({ content: data.content, edited_at: data.edited_at });
        }
        this.upsert({ ...message, revisions, edited_at: data.edited_at });
      } else {
        this.refetchSoon();
      }
    } else if (type === "message.draft.approved" || type === "message.draft.rejected") {
      const message = this.messages.get(data.id);
      if (message && message.status === "draft") {
        this.upsert({ ...message, content: data.content ?? message.content,
          status: type === "message.draft.approved" ? "pending" : "rejected" });
      }
    } else if (type === "message.reaction.updated") {
      this.refetchSoon();
    } else if (type === "chat.read") {
      if (this.chat) this.chat.unread_count = 0;
    } else if (type === "chat.updated") {
      this.refreshChat();
    }
  }

  /** The newest page again, upserted: what events do not carry (attachments). */
  refetchSoon() {
    clearTimeout(this.refetchTimer);
    this.refetchTimer = setTimeout(async () => {
      try {
        const page = await this.ctx.api.get(`/v1/chats/${this.chatId}/messages?limit=20`);
        if (this.alive) for (const message of page.data) this.upsert(message);
      } catch {
        // the events already showed the text; the next event tries again
      }
    }, 250);
  }

  async refreshChat() {
    try {
      const chat = await this.ctx.api.get(`/v1/chats/${this.chatId}`);
      if (!this.alive) return;
      const reassigned = chat.assigned_agent_id !== this.chat?.assigned_agent_id;
      this.chat = chat;
      if (reassigned) this.renderHeader();
      this.renderComposer();
    } catch {
      // keep what is shown
    }
  }

  async markRead() {
    if (this.reading) return void (this.readAgain = true);
    this.reading = true;
    try {
      await this.ctx.api.post(`/v1/chats/${this.chatId}/read`);
      if (this.chat) this.chat.unread_count = 0;
    } catch {
      // it stays unread; the next open or message tries again
    } finally {
      this.reading = false;
      if (this.readAgain && this.alive) {
        this.readAgain = false;
        this.markRead();
      }
    }
  }

  async onTyping(frame) {
    if (frame.chat_id !== this.chatId || frame.user_id === this.ctx.me.user?.id) return;
    const who = frame.visitor ? "The visitor" : (await memberName(this.ctx, frame.user_id))
      || "Someone";
    if (!this.alive) return;
    this.typing.textContent = `${who} is typing…`;
    clearTimeout(this.typingTimer);
    this.typingTimer = setTimeout(() => { this.typing.textContent = ""; }, TYPING_SHOWN);
  }

  // ----- drafts -----------------------------------------------------------

  async decide(message, approve, content) {
    try {
      const path = `/v1/messages/${message.id}/${approve ? "approve" : "reject"}`;
      const body = approve && content && content !== message.content ? { content } : {};
      const decided = await this.ctx.api.post(path, body);
      this.upsert({ ...message, content: decided.content, status: decided.status,
        revisions: message.revisions });
      this.ctx.toast(approve ? "Draft approved: sending" : "Draft rejected");
    } catch (error) {
      this.ctx.toast(error.status === 409 ? "This draft was decided already"
        : `Could not ${approve ? "approve" : "reject"}: ${error.message}`, "error");
      if (error.status === 409) this.refetchSoon();
    }
  }

  // ----- composer ---------------------------------------------------------

  /** The composer, the template picker of a closed WhatsApp window, or why
   * nothing can be sent; rebuilt only when which of them it is changes. */
  renderComposer() {
    const send = (text, extra) => this.sendText(text, extra);
    if (this.ctx.me.organization?.role === "viewer") { // reads chats, cannot write them
      if (!this.composerSlot.querySelector(".composer-readonly")) {
        fill(this.composerSlot, h("p.notice.composer-readonly", { role: "status" },
          "You can read this conversation; replying needs a role above viewer."));
      }
    } else if (this.chat?.unreachable_reason) {
      fill(this.composerSlot, h("div.notice.error.composer-blocked", { role: "status" },
        `Messages cannot be sent here: ${this.chat.unreachable_reason}`));
    } else if (windowClosed(this.chat)) {
      if (!this.composerSlot.querySelector(".window-closed")) {
        fill(this.composerSlot, templatePicker(this.ctx, this.chat, send));
      }
    } else if (!this.composerSlot.querySelector(".composer")) {
      fill(this.composerSlot, composer(this.ctx, this.chatId, send));
    }
  }

  /** Shown at once as pending under a local id; delivered in the background. */
  sendText(text, extra = {}) {
    const local = { id: `local-${uuid()}`, chat_id: this.chatId, content: text,
      is_incoming: false, sender_type: "user", sender_id: this.ctx.me.user?.id,
      status: "pending", metadata: {}, attachments: [], revisions: [],
      created_at: new Date().toISOString().replace("Z", "000"), local_key: uuid(), extra };
    this.upsert(local);
    this.toBottom();
    this.deliver(local);
  }

  /** A `message.created` event of ours that came before the POST's answer. */
  localFor(data) {
    if (data.is_incoming || data.sender_id !== this.ctx.me.user?.id) return null;
    for (const message of this.messages.values()) {
      if (message.local_key && !message.server_id && message.content === data.content) {
        return message;
      }
    }
    return null;
  }

  /** Re-key a local message as the server's `id` (one element, never two). */
  adopt(local, id) {
    const node = this.nodes.get(local.id);
    this.messages.delete(local.id);
    this.nodes.delete(local.id);
    if (this.messages.has(id)) {
      node?.remove();
      return;
    }
    const adopted = { ...local, id, server_id: id };
    this.messages.set(id, adopted);
    if (node) {
      node.dataset.messageId = id;
      this.nodes.set(id, node);
    }
  }

  async deliver(message) {
    const current = this.messages.get(message.id) || message;
    if (current.status !== "pending") this.upsert({ ...current, status: "pending" });
    try {
      // A template's text is the server's to write (what the inbox shows for it).
      const body = message.extra?.template ? message.extra : { content: message.content };
      const sent = await this.ctx.api.post(`/v1/chats/${this.chatId}/messages`, body,
        { headers: { "Idempotency-Key": message.local_key } });
      if (!this.alive) return;
      const { duplicate: _, ...row } = sent;
      if (this.messages.has(message.id)) this.adopt(this.messages.get(message.id), row.id);
      const known = this.messages.get(row.id);
      this.upsert({ ...row, local_key: known?.local_key, server_id: row.id,
        created_at: known?.created_at && !row.created_at ? known.created_at : row.created_at,
        status: known && advances(row.status, known.status) ? known.status : row.status });
    } catch (error) {
      if (!this.alive) return;
      const now = this.messages.get(message.id);
      if (now) {
        // Kept with its key: Retry sends the same message, never a second one.
        this.upsert({ ...now, status: "failed", local_error: error.status === 0
          ? "the network failed; retry when you are back online" : error.message });
      }
    }
  }

  unmount() {
    this.alive = false;
    this.offState();
    this.offTyping();
    clearTimeout(this.typingTimer);
    clearTimeout(this.refetchTimer);
    clearTimeout(this.approvalsTimer);
    document.removeEventListener("visibilitychange", this.onVisible);
    this.ctx.live.unwatchChat(this.chatId);
    this.files.close();
  }
}
