// `#/invite/<token>`: an invitation link opened by the person it was sent
// to. Signed out, the shell shows sign-in (or account creation) first and
// comes back here; signed in, one button joins the organization (the API
// checks the token is theirs: the invitee's email, unused, not expired) and
// switches to it.

import { fill, h, notice } from "../dom.js";

export function mount(root, ctx, { token }) {
  const error = h("p.form-error", { role: "alert" });
  const join = h("button.primary", { type: "button", onclick: async () => {
    join.disabled = true;
    error.textContent = "";
    try {
      const joined = await ctx.api.post("/v1/invitations/accept", { token });
      await ctx.switchOrg(joined.organization_id);
      ctx.toast(`You joined as ${joined.role}`);
    } catch (failure) {
      error.textContent = failure.status === 404 || failure.status === 409
        ? `This invitation cannot be used: ${failure.message}` : failure.message;
      join.disabled = false;
    }
  } }, "Join the organization");
  fill(root, h("section.invite-card", { "aria-labelledby": "invite-title" },
    h("h1", { id: "invite-title" }, "You are invited"),
    h("p", `Signed in as ${ctx.me.user?.email || ""}. Joining adds the organization that`
      + " invited you to your account; you can switch between your organizations at the top."),
    error, join,
    h("p", h("a", { href: "#/inbox" }, "Not now"))));
  if (!token) fill(root, notice("error", "This invitation link is incomplete."));
}
