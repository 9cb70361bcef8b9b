// #/contacts/<id>: the contact panel on a page of its own (a link to share,
// and the panel reachable without a conversation open).

import { h, fill } from "../dom.js";
import { mountPanel } from "./contact.js";

export function mount(root, ctx, params) {
  const holder = h("div.contact-page");
  fill(root, holder);
  return mountPanel(holder, ctx, params.contactId);
}
