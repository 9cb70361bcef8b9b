// The inbox's one DOM helper. Every node is built here from data, and text
// always goes through textContent: message text, names and provider errors
// are user content and never reach innerHTML.

/** h("button.primary", {onclick, type: "submit", "aria-label": "Send"}, "Send", child...) */
export function h(spec, attrs, ...children) {
  const [tag, ...classes] = spec.split(".");
  const node = document.createElement(tag || "div");
  if (classes.length) node.className = classes.join(" ");
  if (attrs && (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else if (key === "dataset") {
      Object.assign(node.dataset, value);
    } else if (key === "class") {
      node.className = value;
    } else if (key === "value" || key === "checked" || key === "disabled" || key === "selected") {
      node[key] = value;
    } else {
      node.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Replace what `node` holds. */
export function fill(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dayFormat = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });

/** The API's timestamps are UTC without a zone. */
export function parseTime(value) {
  if (!value) return null;
  return new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(value) ? value : value + "Z");
}

export function shortTime(value) {
  const at = parseTime(value);
  if (!at) return "";
  const today = new Date();
  return at.toDateString() === today.toDateString() ? timeFormat.format(at) : dayFormat.format(at);
}

export function longTime(value) {
  const at = parseTime(value);
  return at ? at.toLocaleString() : "";
}

/** A small status line for loading / empty / error states. */
export function notice(kind, text, action) {
  return h(`div.notice.${kind}`, { role: kind === "error" ? "alert" : "status" }, text,
    action ? h("button.link", { type: "button", onclick: action.run }, action.label) : null);
}

let toastBox = null;
/** A transient message in the corner (announced to screen readers). */
export function toast(text, kind = "info") {
  if (!toastBox) {
    toastBox = h("div.toasts", { "aria-live": "polite" });
    document.body.append(toastBox);
  }
  const item = h(`div.toast.${kind}`, text);
  toastBox.append(item);
  setTimeout(() => item.remove(), kind === "error" ? 6000 : 3000);
}

export function money(value, currency) {
  if (value === null || value === undefined || value === "") return "";
  const n = Number(value);
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency: currency || "USD",
      maximumFractionDigits: 0 }).format(n);
  } catch {
    return String(n);
  }
}
