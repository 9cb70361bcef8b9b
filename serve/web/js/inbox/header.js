// A conversation's header: the contact, the channel, the agent assigned (a
// select that PATCHes the chat) and the tool calls that agent's runs in this
// chat hold for a person, each approved or denied here.

import { fill, h } from "../dom.js";
import { channelBadge, channelName } from "./common.js";

export class ChatHeader {
  constructor(ctx, chat, agents, { onBack, onChanged }) {
    this.ctx = ctx;
    this.chat = chat;
    this.agents = agents; // the org's agents (a list)
    this.onChanged = onChanged;
    this.approvals = h("div.approvals", { "aria-live": "polite" });
    this.select = h("select.agent-select", { id: "agent-select", onchange: () => this.assign() },
      h("option", { value: "" }, "No agent"),
      agents.map((a) => h("option", { value: a.id, selected: a.id === chat.assigned_agent_id },
        a.name)));
    this.el = h("header.conversation-header",
      h("a.back-link", { href: "#/inbox", onclick: onBack, "aria-label": "Back to the list" },
        "‹ Chats"),
      channelBadge(chat.channel),
      h("div.conversation-title",
        h("h2", chat.contact_name || chat.title || "Unknown contact"),
        h("span.conversation-channel", channelName(chat.channel))),
      h("div.spacer"),
      h("label.agent-label", { for: "agent-select" }, "Agent"), this.select);
    this.loadApprovals();
  }

  async assign() {
    const value = this.select.value || null;
    this.select.disabled = true;
    try {
      this.chat = await this.ctx.api.patch(`/v1/chats/${this.chat.id}`,
                                           { assigned_agent_id: value });
      this.ctx.toast(value ? "Agent assigned" : "Agent unassigned");
      this.onChanged(this.chat);
      this.loadApprovals();
    } catch (error) {
      this.select.value = this.chat.assigned_agent_id || "";
      this.ctx.toast(`Could not assign: ${error.message}`, "error");
    } finally {
      this.select.disabled = false;
    }
  }

  async loadApprovals() {
    const agentId = this.chat.assigned_agent_id;
    if (!agentId) return void this.approvals.replaceChildren();
    try {
      const body = await this.ctx.api.get(`/v1/agents/${agentId}/approvals`);
      const held = body.data.filter((c) => c.chat_id === this.chat.id);
      fill(this.approvals, held.map((call) => this.callNode(agentId, call)));
    } catch (error) {
      if (error.status === 403) return void this.approvals.replaceChildren();
      fill(this.approvals, h("div.notice.error", { role: "alert" },
        `Could not load approvals: ${error.message}`,
        h("button.link", { type: "button", onclick: () => this.loadApprovals() }, "Retry")));
    }
  }

  callNode(agentId, call) {
    const decide = async (approve, node) => {
      for (const b of node.querySelectorAll("button")) b.disabled = true;
      try {
        await this.ctx.api.post(`/v1/agents/${agentId}/executions/${call.execution_id
        }/approvals/${encodeURIComponent(call.call_id)}`, { approve });
        node.remove();
        this.ctx.toast(approve ? "Tool call approved" : "Tool call denied");
      } catch (error) {
        for (const b of node.querySelectorAll("button")) b.disabled = false;
        this.ctx.toast(error.message, "error");
      }
    };
    const node = h("div.approval", { dataset: { callId: call.call_id } },
      h("div.approval-text", h("strong", `The agent wants to run ${call.tool}`),
        h("span", call.reason),
        h("code.approval-args", JSON.stringify(call.arguments))),
      h("div.approval-actions",
        h("button.primary", { type: "button", onclick: () => decide(true, node) }, "Approve"),
        h("button.danger", { type: "button", onclick: () => decide(false, node) }, "Deny")));
    return node;
  }
}
