// The inbox's chat list: filters (unread, channel, agent, assigned to me, a
// debounced search), pages of 50 loaded as the list scrolls, and live
// updates. An event about a chat updates its item in place and moves it to
// the top; a chat the list does not hold yet is fetched and inserted, so a
// conversation that starts while the page is open shows without a reload.

import { query } from "../api.js";
import { fill, h, notice, shortTime, longTime } from "../dom.js";
import { channelBadge } from "./common.js";

const PAGE = 50;
const SEARCH_DELAY = 300;

export class ChatList {
  constructor(ctx, { onOpen, agents }) {
    this.ctx = ctx;
    this.onOpen = onOpen;
    this.agents = agents; // a Promise of the org's agents (for the filter)
    this.chats = new Map(); // id -> chat
    this.items = new Map(); // id -> element
    this.filters = { unread: "", channel: "", agent: "", mine: false, q: "" };
    this.page = 0;
    this.total = null;
    this.loading = false;
    this.generation = 0; // a reload makes answers to earlier requests stale
    this.selected = null;
    this.fetching = new Set();
    this.excluded = new Set(); // chats fetched that the filters leave out
    this.el = this.render();
  }

  render() {
    const search = h("input.chat-search", { type: "search", placeholder: "Search conversations",
      "aria-label": "Search conversations", oninput: () => {
        clearTimeout(this.searchTimer);
        this.searchTimer = setTimeout(() => this.setFilter("q", search.value.trim()),
                                      SEARCH_DELAY);
      } });
    const select = (label, key, options) => h("select", { "aria-label": label,
      onchange: (event) => this.setFilter(key, event.target.value) },
      options.map(([value, text]) => h("option", { value }, text)));
    const agentSelect = select("Filter by agent", "agent", [["", "Any agent"]]);
    this.agents.then((agents) => {
      for (const agent of agents) agentSelect.append(h("option", { value: agent.id }, agent.name));
    }).catch(() => {});
    const mine = h("input", { type: "checkbox", id: "filter-mine",
      onchange: (event) => this.setFilter("mine", event.target.checked) });
    this.body = h("ul.chat-items", { "aria-label": "Conversations" });
    this.status = h("div.chat-list-status");
    this.sentinel = h("div.chat-sentinel", { "aria-hidden": "true" });
    this.scroller = h("div.chat-scroll", this.body, this.status, this.sentinel);
    this.observer = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) this.more();
    }, { root: this.scroller, rootMargin: "200px" });
    this.observer.observe(this.sentinel);
    return h("section.chat-list", { "aria-label": "Chat list" },
      h("div.chat-filters", search,
        h("div.filter-row",
          select("Filter by read state", "unread", [["", "All"], ["true", "Unread"]]),
          select("Filter by channel", "channel", [["", "All channels"], ["api", "API"],
            ["telegram", "Telegram"], ["whatsapp", "WhatsApp"], ["email", "Email"],
            ["webchat", "Web chat"]]),
          agentSelect),
        h("label.filter-mine", { for: "filter-mine" }, mine, "Assigned to me")),
      this.scroller);
  }

  setFilter(key, value) {
    if (this.filters[key] === value) return;
    this.filters[key] = value;
    this.reload();
  }

  params(page) {
    const f = this.filters;
    return query({ limit: PAGE, page, unread: f.unread, channel: f.channel,
      assigned_agent_id: f.agent, assigned_user_id: f.mine ? "me" : "", q: f.q });
  }

  reload() {
    this.generation += 1;
    this.chats.clear();
    this.items.clear();
    this.excluded.clear();
    this.body.replaceChildren();
    this.page = 0;
    this.total = null;
    this.loading = false;
    return this.more();
  }

  get done() {
    return this.total !== null && this.chats.size >= this.total;
  }

  async more() {
    if (this.loading || this.done) return;
    this.loading = true;
    const generation = this.generation;
    fill(this.status, notice("status", this.page ? "Loading more…" : "Loading conversations…"));
    try {
      const body = await this.ctx.api.get(`/v1/chats${this.params(this.page + 1)}`);
      if (generation !== this.generation) return;
      this.page = body.page;
      this.total = body.total;
      for (const chat of body.data) {
        if (!this.chats.has(chat.id)) this.put(chat, false);
      }
      if (body.data.length < PAGE) this.total = this.chats.size;
      this.showState();
    } catch (error) {
      if (generation !== this.generation) return;
      fill(this.status, notice("error", `Could not load conversations: ${error.message}`,
        { label: "Retry", run: () => this.more() }));
    } finally {
      if (generation === this.generation) this.loading = false;
    }
    // A short first page leaves the sentinel in view: keep filling.
    if (generation === this.generation && !this.done && this.sentinelVisible()) this.more();
  }

  sentinelVisible() {
    const box = this.scroller.getBoundingClientRect();
    return this.sentinel.getBoundingClientRect().top < box.bottom + 200;
  }

  showState() {
    if (this.chats.size) {
      this.status.replaceChildren();
      return;
    }
    const filtered = Object.values(this.filters).some(Boolean);
    fill(this.status, filtered
      ? notice("status", "No conversations match these filters.")
      : h("div.notice.empty", { role: "status" }, h("strong", "No conversations yet"),
        h("p", "Connect a channel in ", h("a", { href: "#/settings/integrations" }, "Settings"),
          " and new conversations will show here.")));
  }

  /** Insert or update a chat; `top`: move it first (it has news). */
  put(chat, top) {
    this.chats.set(chat.id, chat);
    const item = this.item(chat);
    const old = this.items.get(chat.id);
    this.items.set(chat.id, item);
    if (top) this.body.prepend(item);
    if (old) {
      if (top) old.remove();
      else old.replaceWith(item);
    } else if (!top) {
      this.body.append(item);
    }
    this.showState();
  }

  item(chat) {
    const last = chat.last_message;
    const name = chat.contact_name || chat.title || "Unknown contact";
    const unread = chat.unread_count || 0;
    const who = !last || last.is_incoming ? "" : last.status === "draft" ? "Draft: "
      : last.sender_type === "agent" ? "Agent: " : "You: ";
    const preview = last ? `${who}${last.content}` : "No messages";
    const button = h("button.chat-item", { type: "button", dataset: { chatId: chat.id },
      "aria-current": this.selected === chat.id ? "true" : null,
      onclick: () => this.onOpen(chat.id) },
    channelBadge(chat.channel),
    h("span.chat-main",
      h("span.chat-top", h("span.chat-name", name),
        h("time.chat-time", { datetime: chat.last_message_at || "",
          title: longTime(chat.last_message_at) }, shortTime(chat.last_message_at))),
      h("span.chat-bottom", h("span.chat-preview", preview),
        unread ? h("span.unread-badge", { "aria-label": `${unread} unread` }, String(unread))
          : null)));
    return h("li", { dataset: { chatId: chat.id } }, button);
  }

  select(chatId) {
    this.selected = chatId;
    for (const [id, item] of this.items) {
      const button = item.firstChild;
      if (id === chatId) button.setAttribute("aria-current", "true");
      else button.removeAttribute("aria-current");
    }
  }

  matches(chat) {
    const f = this.filters;
    if (f.unread === "true" && !chat.unread_count) return false;
    if (f.channel && chat.channel !== f.channel) return false;
    if (f.agent && chat.assigned_agent_id !== f.agent) return false;
    return true;
  }

  /** A chat the list does not hold: fetched, and shown if the filters admit
   * it. A search or "assigned to me" only the server can judge, so under
   * those a chat not listed stays out until the filters change; a chat of
   * another channel or agent is not asked for again at each of its messages. */
  async fetchChat(chatId) {
    if (this.filters.q || this.filters.mine) return;
    if (this.fetching.has(chatId) || this.excluded.has(chatId)) return;
    this.fetching.add(chatId);
    const generation = this.generation;
    try {
      const chat = await this.ctx.api.get(`/v1/chats/${chatId}`);
      if (generation !== this.generation) return;
      if (this.matches(chat)) {
        if (!this.chats.has(chatId) && this.total !== null) this.total += 1;
        this.put(chat, true);
      } else if (this.filters.channel || this.filters.agent) {
        this.excluded.add(chatId);
      }
    } catch {
      // gone, or not ours to read: nothing to show
    } finally {
      this.fetching.delete(chatId);
    }
  }

  /** One live event (any type): the chats it concerns updated in place. */
  onEvent(frame) {
    const chatId = frame.chat_id || frame.data?.chat_id;
    if (!chatId) return;
    const data = frame.data || {};
    const chat = this.chats.get(chatId);
    const type = frame.event_type;
    if (type === "message.received" || type === "message.created") {
      if (!chat) return void this.fetchChat(chatId);
      if (data.status === "draft" && chat.last_message) return; // a draft is not news
      const known = chat.last_message?.id === data.id;
      chat.last_message = { id: data.id, content: data.content ?? "", is_incoming:
        Boolean(data.is_incoming), sender_type: data.sender_type, status: data.status,
        created_at: data.created_at };
      chat.last_message_at = data.created_at || chat.last_message_at;
      if (data.is_incoming && !known) chat.unread_count = (chat.unread_count || 0) + 1;
      this.put(chat, true);
    } else if (type === "chat.read") {
      if (chat) { chat.unread_count = 0; chat.is_unread = false; this.put(chat, false); }
    } else if (type === "chat.created" || type === "chat.updated") {
      this.excluded.delete(chatId); // reassigned, maybe into the filter
      if (!chat) this.fetchChat(chatId);
      else this.refreshChat(chatId);
    } else if (type === "message.status.updated" && chat?.last_message?.id === data.id) {
      chat.last_message.status = data.status;
      this.put(chat, false);
    }
  }

  async refreshChat(chatId) {
    try {
      const chat = await this.ctx.api.get(`/v1/chats/${chatId}`);
      if (this.chats.has(chatId)) this.put(chat, false);
    } catch {
      // keep what is shown
    }
  }

  unmount() {
    clearTimeout(this.searchTimer);
    this.observer.disconnect();
    this.generation += 1;
  }
}
