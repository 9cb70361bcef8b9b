// The inbox's one WebSocket (/v1/ws). It subscribes to the org's events and
// the user's notifications, and to `chat:<id>` for the conversation open
// (typing frames travel per chat). Events arrive in commit order, which is
// not `seq` order, so the position kept is the seq of the LAST event seen
// (what the server resumes after) and duplicates are recognised by seq.
// After a drop (network, server restart, 1012/4008) it reconnects with
// backoff and resubscribes with `since=` that position: the server replays
// what was missed, then goes live; views upsert by id, so nothing shows twice.

const SEEN_MAX = 5000;

export class Live {
  constructor(session) {
    this.session = session;
    this.socket = null;
    this.position = null;
    this.seen = new Set();
    this.handlers = new Map();
    this.chats = new Set();
    this.state = "offline";
    this.attempt = 0;
    this.stopped = true;
    this.timer = null;
    session.onTokens = (token) => {
      if (this.socket?.readyState === WebSocket.OPEN) this.send({ type: "auth", token });
    };
  }

  /** on("message.received", fn), on("*", fn) for every event, on("frame:typing", fn),
   * on("state", fn) for "connecting" | "live" | "offline". Returns the unsubscribe. */
  on(name, handler) {
    if (!this.handlers.has(name)) this.handlers.set(name, new Set());
    this.handlers.get(name).add(handler);
    return () => this.handlers.get(name)?.delete(handler);
  }

  emit(name, value) {
    for (const handler of this.handlers.get(name) || []) {
      try {
        handler(value);
      } catch (error) {
        console.error(error);
      }
    }
  }

  setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.emit("state", state);
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.socket?.close(1000);
    this.socket = null;
    this.setState("offline");
  }

  async connect() {
    if (this.stopped) return;
    this.setState("connecting");
    try {
      if (!this.session.access || Date.now() > this.session.expiresAt - 30_000) {
        await this.session.refresh();
      }
    } catch (error) {
      if (error.status === 401 || error.status === 403) return; // signed out: the app shows sign-in
      this.retry();
      return;
    }
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/v1/ws?token=${
      encodeURIComponent(this.session.access)}`);
    this.socket = socket;
    socket.onopen = () => {
      const frame = { type: "subscribe", topics: ["org", "user", ...[...this.chats].map(
        (id) => `chat:${id}`)] };
      if (this.position !== null) frame.since = this.position;
      socket.send(JSON.stringify(frame));
    };
    socket.onmessage = (message) => this.receive(JSON.parse(message.data));
    socket.onclose = (closed) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.stopped) return;
      this.setState("offline");
      if (closed.code === 4403) return; // a topic we may not read: retrying cannot help
      if (closed.code === 4401) this.session.access = null; // refresh before the next try
      this.retry();
    };
  }

  retry() {
    clearTimeout(this.timer);
    const delay = Math.min(10_000, 500 * 2 ** this.attempt) * (0.75 + Math.random() / 2);
    this.attempt += 1;
    this.timer = setTimeout(() => this.connect(), delay);
  }

  receive(frame) {
    if (frame.type === "event") {
      if (this.seen.has(frame.seq)) return;
      this.seen.add(frame.seq);
      if (this.seen.size > SEEN_MAX) this.seen.delete(this.seen.values().next().value);
      this.position = frame.seq;
      this.emit(frame.event_type, frame);
      this.emit("*", frame);
    } else if (frame.type === "subscribed") {
      if (this.position === null) this.position = frame.position;
      this.attempt = 0;
      this.setState("live");
    } else {
      this.emit(`frame:${frame.type}`, frame);
    }
  }

  send(frame) {
    if (this.socket?.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }

  /** Typing frames and per-chat events of the conversation on screen. */
  watchChat(chatId) {
    this.chats.add(chatId);
    this.send({ type: "subscribe", topics: [`chat:${chatId}`] });
  }

  unwatchChat(chatId) {
    this.chats.delete(chatId);
    this.send({ type: "unsubscribe", topics: [`chat:${chatId}`] });
  }
}
