// Bidi web chat widget: one file, no dependencies.
//
// Embed: <script src="https://<bidi>/widget.js" data-integration="<id>" async></script>
// Optional, set before: window.bidiChat = {identifier, identifier_hash, name, email}.
//
// It renders in a Shadow DOM (the page's CSS cannot reach it, nor ours the
// page), keeps its visitor id and session token in localStorage per
// integration (a reload resumes the same chat), and reads the chat from the
// visitor WebSocket, resuming after a drop with the last event seq it saw
// (`since`): messages are kept by id, so a replay never shows one twice.
// Every text goes into the DOM as textContent, never as markup.
(() => {
  "use strict";

  const script = document.currentScript
    || document.querySelector("script[data-integration][src*='widget.js']");
  if (!script || !script.dataset.integration) return;
  const integration = script.dataset.integration;
  const base = new URL(script.src, location.href).origin;
  const wsBase = base.replace(/^http/, "ws");
  const storeKey = `bidi-chat:${integration}`;
  const config = window.bidiChat || {};

  const CSS = `
:host { all: initial; }
* { box-sizing: border-box; font-family: system-ui, -apple-system, "Segoe UI", sans-serif; }
.launcher { position: fixed; right: 20px; bottom: 20px; z-index: 2147483000;
  width: 56px; height: 56px; border-radius: 50%; border: 0; cursor: pointer;
  display: grid; place-items: center;
  background: #2451d6; color: #fff; box-shadow: 0 4px 14px rgba(0,0,0,.25); }
.launcher:focus-visible, button:focus-visible, textarea:focus-visible {
  outline: 3px solid #f5a623; outline-offset: 2px; }
.panel { position: fixed; right: 20px; bottom: 88px; z-index: 2147483000;
  width: 360px; max-width: calc(100vw - 24px); height: 520px; max-height: calc(100vh - 110px);
  display: flex; flex-direction: column; background: #fff; color: #1c1e21;
  border-radius: 12px; box-shadow: 0 8px 30px rgba(0,0,0,.25); overflow: hidden; }
.panel[hidden] { display: none; }
@media (max-width: 480px) {
  .panel { right: 0; left: 0; bottom: 0; width: 100vw; max-width: 100vw;
    height: calc(100vh - 80px); max-height: none; border-radius: 12px 12px 0 0; }
  .launcher { right: 12px; bottom: 12px; }
}
header { display: flex; align-items: center; justify-content: space-between;
  padding: 12px 14px; background: #2451d6; color: #fff; }
header h2 { margin: 0; font-size: 16px; font-weight: 600; }
.close { background: transparent; border: 0; color: #fff; font-size: 22px; cursor: pointer;
  line-height: 1; padding: 4px 8px; border-radius: 6px; }
.log { flex: 1; overflow-y: auto; padding: 12px; display: flex; flex-direction: column;
  gap: 8px; background: #f5f6f8; }
.note { margin: auto; color: #5f6368; font-size: 14px; text-align: center; padding: 12px; }
.note.error { color: #b3261e; }
.msg { max-width: 80%; padding: 8px 11px; border-radius: 14px; font-size: 14px;
  line-height: 1.4; white-space: pre-wrap; word-wrap: break-word; overflow-wrap: anywhere; }
.msg.theirs { align-self: flex-start; background: #fff; border: 1px solid #e1e3e8; }
.msg.mine { align-self: flex-end; background: #2451d6; color: #fff; }
.meta { display: block; font-size: 11px; opacity: .8; margin-top: 3px; }
.retry { background: transparent; border: 1px solid currentColor; color: inherit;
  border-radius: 6px; font-size: 11px; margin-left: 6px; cursor: pointer; }
.typing { min-height: 18px; padding: 0 14px; font-size: 12px; color: #5f6368;
  background: #f5f6f8; }
form { display: flex; gap: 8px; padding: 10px; border-top: 1px solid #e1e3e8; }
textarea { flex: 1; resize: none; border: 1px solid #c4c7cf; border-radius: 8px;
  padding: 8px; font-size: 14px; min-height: 40px; max-height: 120px; color: #1c1e21; }
.send { border: 0; border-radius: 8px; background: #2451d6; color: #fff; padding: 0 14px;
  font-size: 14px; cursor: pointer; }
.send:disabled { opacity: .5; cursor: default; }
.sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0);
  white-space: nowrap; }
`;

  // -- DOM, by textContent only ----------------------------------------------
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === false || value == null) continue;
      if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else if (key === "class") el.className = value;
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child == null) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  // A speech bubble, drawn: an emoji depends on the visitor's fonts.
  function icon() {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("width", "26");
    svg.setAttribute("height", "26");
    svg.setAttribute("aria-hidden", "true");
    const path = document.createElementNS(ns, "path");
    path.setAttribute("fill", "currentColor");
    path.setAttribute("d", "M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V5"
      + "a2 2 0 0 1 2-2z");
    svg.append(path);
    return svg;
  }

  // -- state -----------------------------------------------------------------
  function load() {
    try { return JSON.parse(localStorage.getItem(storeKey) || "{}") || {}; } catch { return {}; }
  }
  const saved = load();
  function save() {
    try { localStorage.setItem(storeKey, JSON.stringify(saved)); } catch { /* private mode */ }
  }

  const bubbles = new Map(); // message id (or client id while sending) -> element
  let socket = null;
  let backoff = 1000;
  let reconnectTimer = null;
  let typingTimer = null;
  let typedAt = 0;
  let started = false;

  // -- elements ----------------------------------------------------------------
  const host = h("div", { "data-bidi-chat": "" });
  const root = host.attachShadow({ mode: "open" });
  const log = h("div", { class: "log", role: "log", "aria-live": "polite",
    "aria-label": "Messages" });
  const note = h("p", { class: "note" }, "Loading…");
  log.append(note);
  const typing = h("div", { class: "typing", "aria-live": "polite" });
  const input = h("textarea", { id: "bidi-input", rows: 1, maxlength: 4096,
    placeholder: "Write a message…", onkeydown: onKey, oninput: onInput });
  const sendButton = h("button", { type: "submit", class: "send" }, "Send");
  const form = h("form", { onsubmit: onSubmit },
    h("label", { for: "bidi-input", class: "sr" }, "Your message"), input, sendButton);
  const closeButton = h("button", { type: "button", class: "close", "aria-label": "Close chat",
    onclick: () => toggle(false) }, "×");
  const panel = h("section", { class: "panel", id: "bidi-panel", role: "dialog",
    "aria-label": "Chat with us", hidden: true },
  h("header", {}, h("h2", {}, "Chat with us"), closeButton), log, typing, form);
  const launcher = h("button", { type: "button", class: "launcher", "aria-label": "Open chat",
    "aria-controls": "bidi-panel", "aria-expanded": "false", onclick: () => toggle() },
  icon());
  root.append(h("style", {}, CSS), panel, launcher);

  function toggle(open = panel.hidden) {
    panel.hidden = !open;
    launcher.setAttribute("aria-expanded", String(open));
    launcher.setAttribute("aria-label", open ? "Close chat" : "Open chat");
    if (open) {
      start();
      input.focus();
    } else {
      launcher.focus();
    }
  }
  panel.addEventListener("keydown", (e) => { if (e.key === "Escape") toggle(false); });

  function showNote(text, error = false) {
    note.textContent = text;
    note.className = error ? "note error" : "note";
    if (!note.isConnected) log.prepend(note);
  }
  function hideNoteIfMessages() {
    if (bubbles.size && note.isConnected) note.remove();
    else if (!bubbles.size) showNote("No messages yet. Say hello!");
  }

  // -- rendering -----------------------------------------------------------------
  function statusText(message) {
    if (!message.is_incoming) return "";
    if (message.status === "pending") return "Sending…";
    if (message.status === "failed") return "Not sent";
    return "Sent";
  }
  function render(message) {
    const mine = Boolean(message.is_incoming);
    const el = bubbles.get(message.id) || h("div", {});
    el.className = `msg ${mine ? "mine" : "theirs"}`;
    el.dataset.id = message.id;
    el.dataset.at = String(Date.parse(message.created_at || "") || Date.now());
    const who = mine ? "You" : (message.sender_type === "agent" ? "Assistant" : "Team");
    el.replaceChildren(h("span", { class: "sr" }, `${who}: `), message.content || "");
    const status = statusText(message);
    if (status || message.retry) {
      const meta = h("span", { class: "meta" }, status);
      if (message.retry) {
        meta.append(h("button", { type: "button", class: "retry", onclick: message.retry },
          "Retry"));
      }
      el.append(meta);
    }
    if (!el.isConnected) place(el);
    bubbles.set(message.id, el);
    hideNoteIfMessages();
    return el;
  }
  function place(el) {
    const at = Number(el.dataset.at);
    const stick = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    const later = [...log.querySelectorAll(".msg")].find((m) => Number(m.dataset.at) > at);
    if (later) log.insertBefore(el, later); else log.append(el);
    if (stick || !later) log.scrollTop = log.scrollHeight;
  }
  function upsert(message) {
    const pending = message.client_id && message.client_id !== message.id
      && bubbles.get(message.client_id);
    if (pending) { // its own message, back from the server before the POST's answer
      pending.remove();
      bubbles.delete(message.client_id);
    }
    const known = bubbles.get(message.id);
    if (known && known.dataset.status === "sent" && message.status === "pending") return;
    render(message).dataset.status = message.status;
  }
  function setStatus(id, status) {
    const el = bubbles.get(id);
    if (!el) return;
    const meta = el.querySelector(".meta");
    if (meta && el.classList.contains("mine")) {
      meta.textContent = status === "failed" ? "Not sent" : "Sent";
    }
    el.dataset.status = status;
  }

  // -- the API ---------------------------------------------------------------------
  async function session(fresh = false) {
    // Another person signed in on this browser (or out): not their chat.
    const who = typeof config.identifier === "string" ? config.identifier : "";
    if ((saved.identifier || "") !== who) {
      for (const key of ["token", "expires_at", "chat_id", "seq"]) delete saved[key];
      saved.identifier = who;
      save();
    }
    if (!fresh && saved.token && saved.expires_at
        && Date.parse(saved.expires_at) - Date.now() > 60_000) return saved.token;
    const body = {};
    if (saved.visitor_id) body.visitor_id = saved.visitor_id;
    for (const key of ["identifier", "identifier_hash", "name", "email"]) {
      if (typeof config[key] === "string" && config[key]) body[key] = config[key];
    }
    let response = await fetch(`${base}/v1/webchat/${integration}/sessions`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body) });
    if (response.status === 401 && body.visitor_id) { // an id this engine no longer takes
      delete body.visitor_id;
      response = await fetch(`${base}/v1/webchat/${integration}/sessions`, {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body) });
    }
    if (!response.ok) throw new Error(`session: ${response.status}`);
    const data = await response.json();
    if (saved.chat_id && saved.chat_id !== data.chat_id) saved.seq = 0; // another chat
    Object.assign(saved, { token: data.token, expires_at: data.expires_at,
      visitor_id: data.visitor_id, chat_id: data.chat_id });
    save();
    return data.token;
  }

  async function api(path, options = {}) {
    for (let attempt = 0; attempt < 2; attempt += 1) {
      const token = await session(attempt > 0);
      const response = await fetch(`${base}${path}`, { ...options,
        headers: { ...(options.headers || {}), Authorization: `Bearer ${token}` } });
      if (response.status !== 401) return response;
    }
    throw new Error("not authorized");
  }

  async function history() {
    const response = await api("/v1/webchat/messages?limit=50");
    if (!response.ok) throw new Error(`messages: ${response.status}`);
    const page = await response.json();
    for (const message of page.data.reverse()) upsert(message);
    hideNoteIfMessages();
  }

  async function send(content, clientId = crypto.randomUUID()) {
    const draft = { id: clientId, content, is_incoming: true, status: "pending",
      created_at: new Date().toISOString() };
    const el = render(draft);
    el.dataset.status = "pending";
    try {
      const response = await api("/v1/webchat/messages", { method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ content, client_id: clientId }) });
      if (!response.ok) throw new Error(`send: ${response.status}`);
      const accepted = await response.json();
      bubbles.delete(clientId);
      if (bubbles.has(accepted.id) || !el.isConnected) {
        el.remove(); // the WebSocket was first
      } else {
        el.dataset.id = accepted.id;
        bubbles.set(accepted.id, el);
      }
      setStatus(accepted.id, "sent");
    } catch {
      render({ ...draft, status: "failed", retry: () => {
        bubbles.get(clientId)?.remove();
        bubbles.delete(clientId);
        send(content, clientId); // the same client_id: stored once whatever happened
      } });
    }
  }

  // -- the WebSocket -------------------------------------------------------------
  async function connect() {
    clearTimeout(reconnectTimer);
    let token;
    try {
      token = await session();
    } catch {
      return retryLater();
    }
    const ws = new WebSocket(`${wsBase}/v1/webchat/ws?token=${encodeURIComponent(token)}`);
    socket = ws;
    ws.onopen = () => ws.send(JSON.stringify({ type: "subscribe", since: saved.seq || 0 }));
    ws.onmessage = (event) => {
      let frame;
      try { frame = JSON.parse(event.data); } catch { return; }
      if (frame.seq && frame.seq > (saved.seq || 0)) { saved.seq = frame.seq; save(); }
      if (frame.type === "subscribed") {
        backoff = 1000;
      } else if (frame.type === "message") {
        if (!frame.message.is_incoming) showTyping(false);
        upsert(frame.message);
      } else if (frame.type === "status") {
        setStatus(frame.message_id, frame.status);
      } else if (frame.type === "typing") {
        showTyping(true);
      }
    };
    ws.onclose = (event) => {
      if (socket !== ws) return;
      socket = null;
      if (event.code === 4401) { saved.token = null; save(); }
      retryLater();
    };
  }
  function retryLater() {
    const wait = backoff * (0.8 + Math.random() * 0.4);
    backoff = Math.min(backoff * 2, 30_000);
    reconnectTimer = setTimeout(connect, wait);
  }

  function showTyping(on) {
    clearTimeout(typingTimer);
    typing.textContent = on ? "Typing…" : "";
    if (on) typingTimer = setTimeout(() => { typing.textContent = ""; }, 4000);
  }

  // -- input -------------------------------------------------------------------------
  function onKey(event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  }
  function onInput() {
    const now = Date.now();
    if (socket && socket.readyState === WebSocket.OPEN && now - typedAt > 2000) {
      typedAt = now;
      socket.send(JSON.stringify({ type: "typing" }));
    }
  }
  function onSubmit(event) {
    event.preventDefault();
    const content = input.value.trim();
    if (!content) return;
    input.value = "";
    send(content);
  }

  async function start() {
    if (started) return;
    started = true;
    try {
      await history();
    } catch {
      showNote("The chat is unavailable right now. Please try again later.", true);
    }
    connect();
  }

  function mount() {
    document.body.append(host);
    if (saved.token || saved.visitor_id) start(); // a reload: the chat as it was
  }
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);
})();
