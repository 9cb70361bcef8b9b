// Settings › Agents: the org's AI agents, one form to create or edit them
// (prompt, provider and model, tools as checkboxes from GET
// /v1/agents/tools, guardrails such as draft or autopilot), and each agent's
// runs. Left empty on create, the prompt and tools are the agent type's
// built-in ones (the API fills them in). An edit keeps the guardrails the
// form does not show (business hours, say): the form's are laid over them.

import { h, fill, longTime, notice } from "../dom.js";
import { field, select, submitting, text } from "./forms.js";
import { listInto } from "./settings.js";

const TYPES = [["sdr", "SDR"], ["bizdev", "Business development"], ["followup", "Follow-up"],
  ["analytics", "Analytics"], ["admin", "Admin"]];
const PROVIDERS = [["", "Default (the org's key, else the engine's)"], ["openai", "OpenAI"],
  ["anthropic", "Anthropic"], ["offline", "Offline (no model)"]];
const MODES = [["draft", "Draft: a person approves each reply"], ["autopilot", "Autopilot: replies are sent"]];
const LIMITS = [["max_messages_per_contact_per_day", "Messages per contact per day", 0, 10000],
  ["max_tool_steps", "Tool steps per run", 0, 20], ["max_tokens_per_run", "Tokens per run", 1, 1000000]];
const lines = (value) => String(value || "").split("\n").map((l) => l.trim()).filter(Boolean);

export function mount(root, ctx) {
  const list = h("div");
  const editor = h("div");
  const runs = h("div", { "aria-live": "polite" });
  let tools = null;
  const reload = () => listInto(list, async () => (await ctx.api.get("/v1/agents?limit=100")).data,
    (agent) => h("li.settings-row", { dataset: { agentId: agent.id } },
      h("div.row-main", h("strong", agent.name),
        h("small", `${agent.type} · ${agent.guardrails?.mode || "draft"} · ${
          agent.provider || "default provider"}${agent.model ? ` · ${agent.model}` : ""}`),
        h("small", agent.is_active === false ? "inactive" : "active")),
      h("button", { type: "button", onclick: () => edit(agent) }, `Edit ${agent.name}`),
      h("button", { type: "button", onclick: () => showRuns(agent) }, `Runs of ${agent.name}`)),
    "No agents yet.");

  async function toolList() {
    tools ??= ctx.api.get("/v1/agents/tools").catch((error) => { tools = null; throw error; });
    return tools;
  }

  async function edit(agent) {
    fill(editor, notice("status", "Loading the tools…"));
    let known;
    try {
      known = await toolList();
    } catch (error) {
      fill(editor, notice("error", `Could not load the tools: ${error.message}`,
        { label: "Retry", run: () => edit(agent) }));
      return;
    }
    const g = agent?.guardrails || {};
    const kind = select("type", TYPES);
    const provider = select("provider", PROVIDERS);
    provider.value = agent?.provider || "";
    const mode = select("guardrails.mode", MODES);
    mode.value = g.mode || "draft";
    const boxes = h("fieldset.tools", h("legend", "Tools"),
      agent ? null : h("small", "None ticked: the type's default tools."),
      known.map((tool) => field(tool.name, h("input", { type: "checkbox", value: tool.name,
        dataset: { skip: "" }, checked: Boolean(agent?.tools.includes(tool.name)) }),
      tool.description)));
    const area = (name, value, rows = 3) => h("textarea", { name, rows: String(rows), value });
    const form = h("form.settings-form", { "aria-label": agent ? `Edit ${agent.name}` : "New agent" },
      h("h3", agent ? `Edit ${agent.name}` : "New agent"),
      h("div.form-row", field("Name", text("name", { required: true, maxlength: "255",
        value: agent?.name || "" })), agent ? null : field("Type", kind)),
      field("Description", text("description", { maxlength: "2000", value: agent?.description || "" })),
      field("Prompt", area("prompt_template", agent?.prompt_template || "", 6),
        "Variables: {contact}, {company}, {deal}, {org}, {recent_messages}, {memories}."
        + (agent ? "" : " Empty: the type's built-in prompt.")),
      h("div.form-row", field("Provider", provider),
        field("Model", text("model", { value: agent?.model || "", placeholder: "default" })),
        field("Temperature", h("input", { name: "temperature", type: "number", min: "0", max: "2",
          step: "0.1", value: agent?.temperature ?? "" })),
        field("Max tokens", h("input", { name: "max_tokens", type: "number", min: "1",
          max: "32000", value: agent?.max_tokens ?? "" }))),
      boxes,
      h("fieldset", h("legend", "Guardrails"), field("Reply mode", mode),
        h("div.form-row", LIMITS.map(([key, label, min, max]) => field(label, h("input", {
          name: `guardrails.${key}`, type: "number", min: String(min), max: String(max),
          value: g[key] ?? "" })))),
        field("Blocked topics", area("guardrails.blocked_topics", (g.blocked_topics || []).join("\n")),
          "One per line."),
        field("Blocked patterns", area("guardrails.blocked_patterns",
          (g.blocked_patterns || []).join("\n")), "Regular expressions, one per line.")),
      field("Active", h("input", { type: "checkbox", name: "is_active",
        checked: agent ? agent.is_active !== false : true })),
      h("p.form-error", { role: "alert" }),
      h("div.form-actions", h("button.primary", { type: "submit" }, agent ? "Save agent" : "Create agent"),
        h("button", { type: "button", onclick: () => fill(editor, newButton()) }, "Cancel")));
    form.addEventListener("submit", submitting(form, async (body) => {
      const picked = [...boxes.querySelectorAll("input:checked")].map((box) => box.value);
      if (picked.length || agent) body.tools = picked;
      const rails = body.guardrails || {};
      rails.blocked_topics = lines(rails.blocked_topics);
      rails.blocked_patterns = lines(rails.blocked_patterns);
      body.guardrails = { ...g, ...rails };
      const saved = agent ? await ctx.api.patch(`/v1/agents/${agent.id}`, body)
        : await ctx.api.post("/v1/agents", body);
      ctx.toast(`Agent “${saved.name}” ${agent ? "saved" : "created"}`);
      fill(editor, newButton());
      reload();
    }));
    fill(editor, form);
    form.querySelector("input").focus();
  }

  const newButton = () => h("button.primary", { type: "button", onclick: () => edit(null) },
    "New agent");

  async function showRuns(agent) {
    fill(runs, h("h3", `Runs of ${agent.name}`), h("div"));
    await listInto(runs.lastChild,
      async () => (await ctx.api.get(`/v1/agents/${agent.id}/executions?limit=50`)).data,
      (run) => h("li.settings-row", h("div.row-main",
        h("strong", `${run.status || "?"} · ${run.trigger_event || "run"}`),
        h("small", [longTime(run.created_at), run.provider, run.tokens_used !== null
          ? `${run.tokens_used} tokens` : null, run.execution_time_ms !== null
          ? `${run.execution_time_ms} ms` : null].filter(Boolean).join(" · ")),
        run.error_message ? h("small.status-error", run.error_message) : null)),
      "No runs yet.");
  }

  fill(editor, newButton());
  fill(root, h("section", { "aria-labelledby": "agents-title" },
    h("h2", { id: "agents-title" }, "Agents"), editor, list, runs));
  reload();
}
