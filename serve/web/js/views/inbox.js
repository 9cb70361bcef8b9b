// The inbox: the chat list, the open conversation and the contact's panel
// side by side (one column at phone width: the list, or the conversation
// with a way back). Moving between chats keeps the list (the router calls
// `update`), so its scroll, filters and live state survive. Every live event
// goes to the list and, when it concerns the open chat, to the conversation;
// both upsert by id, so a replay after a reconnect changes nothing twice.

import { fill, h, notice } from "../dom.js";
import { ChatList } from "../inbox/list.js";
import { Conversation } from "../inbox/conversation.js";

export function mount(root, ctx, params) {
  const agentList = ctx.api.get("/v1/agents?limit=100").then((b) => b.data).catch(() => []);
  const agents = new Map();
  const ready = agentList.then((list) => { for (const a of list) agents.set(a.id, a); });
  const list = new ChatList(ctx, { agents: agentList,
                                   onOpen: (id) => ctx.navigate(`#/inbox/${id}`) });
  const middle = h("div.inbox-conversation");
  const side = h("aside.inbox-contact", { "aria-label": "Contact" });
  const layout = h("div.inbox", list.el, middle, side);
  fill(root, layout);
  let conversation = null;
  let contactUnmount = null;
  let contactId = null;
  let opened = 0;

  function showContact(chat) {
    if (chat.contact_id === contactId) return;
    if (typeof contactUnmount === "function") contactUnmount();
    contactUnmount = null;
    contactId = chat.contact_id;
    fill(side, notice("status", "Loading contact…"));
    const fallback = () => fill(side, h("div.contact-fallback",
      h("h3", chat.contact_name || "Unknown contact"),
      h("p.muted", "Contact details are not available here.")));
    if (!contactId) return void fallback();
    const shown = contactId;
    import("./contact.js").then(async (m) => {
      if (shown !== contactId) return;
      side.replaceChildren();
      contactUnmount = (await m.mountPanel(side, ctx, shown)) || null;
    }).catch(() => { if (shown === contactId) fallback(); });
  }

  async function open(chatId) {
    const mine = ++opened;
    conversation?.unmount();
    conversation = null;
    list.select(chatId);
    layout.dataset.open = chatId ? "chat" : "list";
    if (!chatId) {
      fill(middle, h("div.notice.status.pick-chat", { role: "status" },
        "Pick a conversation from the list."));
      side.replaceChildren();
      contactId = null;
      return;
    }
    await ready;
    if (mine !== opened) return;
    conversation = new Conversation(ctx, chatId, { agents,
      onBack: (event) => { event.preventDefault(); ctx.navigate("#/inbox"); },
      onChat: (chat) => {
        showContact(chat);
        if (list.chats.has(chat.id)) list.put(chat, false);
      } });
    fill(middle, conversation.el);
    conversation.load();
  }

  const off = ctx.live.on("*", (frame) => {
    list.onEvent(frame);
    const chatId = frame.chat_id || frame.data?.chat_id;
    if (conversation && chatId === conversation.chatId) conversation.onEvent(frame);
  });
  list.more();
  open(params.chatId);

  return {
    update: (next) => open(next.chatId),
    unmount: () => {
      off();
      conversation?.unmount();
      list.unmount();
      if (typeof contactUnmount === "function") contactUnmount();
    },
  };
}
