// #/pipeline[/<id>]: a pipeline's kanban board. Stages are columns with
// their deal count and value sum; deals are cards that move by drag and
// drop or, from the keyboard, by the "Move to…" select on each card.
//
// A move is optimistic: the card, counts and sums change at once, the PATCH
// follows, and a refusal puts everything back with an error toast. The
// server's board is the truth, so any deal or pipeline event (someone
// else's move, a new deal, an agent's change) re-reads the kanban, with
// the moves still in flight laid over it; a read that started before a
// local move is discarded and read again, so an old answer never undoes
// what the user just did.

import { h, fill, money, notice } from "../dom.js";
import { field, select, showError, text } from "./forms.js";

const REFETCH_DELAY = 100; // ms: a burst of events (a bulk change) costs one read

export async function mount(root, ctx, params) {
  let alive = true;
  let board = null;
  let version = 0;
  let timer = null;
  const pending = new Map(); // deal id -> stage id it is moving to
  const contacts = new Map(); // contact id -> display name (or a promise of it)
  const announce = h("div.visually-hidden", { role: "status", "aria-live": "polite" });
  const body = h("div.pipeline-body");
  fill(root, h("section.pipeline", { "aria-labelledby": "pipeline-title" }, body, announce));
  fill(body, notice("status", "Loading pipelines…"));

  let pipelines;
  try {
    pipelines = (await ctx.api.get("/v1/pipelines?limit=100")).data;
  } catch (error) {
    fill(body, notice("error", `Could not load the pipelines: ${error.message}`,
      { label: "Retry", run: () => ctx.navigate(location.hash) }));
    return () => { alive = false; };
  }
  if (!pipelines.length) {
    fill(body, h("h1", { id: "pipeline-title" }, "Pipeline"),
      notice("status", "No pipelines yet. Create one with POST /v1/pipelines or in your CRM."));
    return () => { alive = false; };
  }
  const current = pipelines.find((p) => p.id === params.pipelineId)
    || pipelines.find((p) => p.is_default) || pipelines[0];
  if (params.pipelineId !== current.id) history.replaceState(null, "", `#/pipeline/${current.id}`);

  const picker = h("select", { id: "pipeline-picker", onchange: () =>
    ctx.navigate(`#/pipeline/${picker.value}`) },
  pipelines.map((p) => h("option", { value: p.id, selected: p.id === current.id }, p.name)));
  const totals = h("span.pipeline-totals", { role: "status" });
  const columns = h("div.kanban", { role: "list", "aria-label": `Stages of ${current.name}` });
  const form = newDealForm();
  const toggle = h("button.primary", { type: "button", "aria-expanded": "false",
    "aria-controls": "new-deal", onclick: () => {
      form.hidden = !form.hidden;
      toggle.setAttribute("aria-expanded", String(!form.hidden));
      if (!form.hidden) form.querySelector("input").focus();
    } }, "New deal");
  fill(body,
    h("header.pipeline-head", h("h1", { id: "pipeline-title" }, "Pipeline"),
      h("label.visually-hidden", { for: "pipeline-picker" }, "Pipeline"), picker, totals,
      h("div.spacer"), toggle),
    form, columns);
  fill(columns, notice("status", "Loading the board…"));

  async function load() {
    const started = version;
    try {
      const fresh = await ctx.api.get(`/v1/pipelines/${current.id}/kanban`);
      if (!alive) return;
      if (started !== version) { refetch(); return; } // a local move came in between
      board = fresh;
      for (const [dealId, stageId] of pending) relocate(dealId, stageId);
      render();
    } catch (error) {
      if (!alive) return;
      if (!board) fill(columns, notice("error", `Could not load the board: ${error.message}`,
        { label: "Retry", run: load }));
      else ctx.toast(`Could not refresh the board: ${error.message}`, "error");
    }
  }

  function refetch() {
    clearTimeout(timer);
    timer = setTimeout(load, REFETCH_DELAY);
  }

  const stageOf = (dealId) => board.stages.find((s) => s.deals.some((d) => d.id === dealId));

  /** Move a deal between columns in `board`, counts and sums with it. */
  function relocate(dealId, stageId) {
    const from = stageOf(dealId);
    const to = board.stages.find((s) => s.id === stageId);
    if (!from || !to || from === to) return null;
    const deal = from.deals.find((d) => d.id === dealId);
    from.deals = from.deals.filter((d) => d.id !== dealId);
    from.count -= 1;
    from.value_sum -= deal.value || 0;
    to.deals = [{ ...deal, stage_id: stageId }, ...to.deals];
    to.count += 1;
    to.value_sum += deal.value || 0;
    return from.id;
  }

  async function move(dealId, stageId) {
    const deal = stageOf(dealId)?.deals.find((d) => d.id === dealId);
    const fromId = relocate(dealId, stageId);
    if (!fromId) return;
    version += 1;
    pending.set(dealId, stageId);
    const target = board.stages.find((s) => s.id === stageId);
    render(dealId);
    announce.textContent = `${deal.name} moved to ${target.name}`;
    try {
      await ctx.api.patch(`/v1/deals/${dealId}`, { stage_id: stageId });
      pending.delete(dealId);
      render();
    } catch (error) {
      pending.delete(dealId);
      version += 1;
      relocate(dealId, fromId);
      render(dealId);
      const back = board.stages.find((s) => s.id === fromId);
      announce.textContent = `${deal.name} could not move; back in ${back.name}`;
      ctx.toast(`Could not move “${deal.name}”: ${error.message}`, "error");
    }
    refetch();
  }

  function render(focusDeal) {
    const restore = focusDeal || document.activeElement?.closest?.(".deal-card")?.dataset.dealId;
    totals.textContent = `${sumCount()} deals · ${money(sumValue(), currencyOf(board.stages))}`;
    fill(columns, board.stages.length ? board.stages.map(column)
      : notice("status", "This pipeline has no stages."));
    if (restore) columns.querySelector(`[data-deal-id="${restore}"] select`)?.focus();
  }

  const sumCount = () => board.stages.reduce((n, s) => n + s.count, 0);
  const sumValue = () => board.stages.reduce((n, s) => n + s.value_sum, 0);

  function column(stage) {
    const titleId = `stage-${stage.id}`;
    const list = h("ul.cards", { "aria-labelledby": titleId },
      stage.deals.length ? stage.deals.map((deal) => card(deal, stage))
        : h("li.cards-empty", "No deals"));
    const node = h("section.stage", { role: "listitem", dataset: { stageId: stage.id },
      "aria-labelledby": titleId,
      ondragover: (event) => { event.preventDefault(); node.classList.add("drop-target"); },
      ondragleave: () => node.classList.remove("drop-target"),
      ondrop: (event) => {
        event.preventDefault();
        node.classList.remove("drop-target");
        const dealId = event.dataTransfer.getData("text/plain");
        if (dealId) move(dealId, stage.id);
      } },
    h("header.stage-head",
      h("h2", { id: titleId }, stage.name),
      h("span.stage-count", { "aria-label": `${stage.count} deals` }, String(stage.count)),
      h("span.stage-sum", money(stage.value_sum, currencyOf([stage])))),
    list,
    stage.count > stage.deals.length
      ? h("p.muted.more", `and ${stage.count - stage.deals.length} more`) : null);
    if (stage.color) node.style.borderTopColor = stage.color;
    return node;
  }

  function card(deal) {
    const moveId = `move-${deal.id}`;
    const picker = h("select", { id: moveId, onchange: () => {
      if (picker.value) move(deal.id, picker.value);
    } },
    h("option", { value: "" }, "Move to…"),
    board.stages.filter((s) => s.id !== deal.stage_id).map((s) =>
      h("option", { value: s.id }, s.name)));
    const who = h("span.deal-contact");
    if (deal.contact_id) contactName(deal.contact_id, who);
    return h("li.deal-card", { draggable: "true", dataset: { dealId: deal.id },
      "aria-busy": pending.has(deal.id) ? "true" : null,
      ondragstart: (event) => {
        event.dataTransfer.setData("text/plain", deal.id);
        event.dataTransfer.effectAllowed = "move";
      } },
    h("strong.deal-title", deal.name),
    deal.value !== null ? h("span.deal-value", money(deal.value, deal.currency)) : null,
    who,
    h("label.visually-hidden", { for: moveId }, `Move ${deal.name} to`), picker);
  }

  /** The card's contact line; names are fetched once per board. */
  function contactName(id, into) {
    if (!contacts.has(id)) {
      contacts.set(id, ctx.api.get(`/v1/contacts/${id}`).then((c) =>
        [c.first_name, c.last_name].filter(Boolean).join(" ") || c.email || c.phone
          || (c.telegram_username ? `@${c.telegram_username}` : "Contact"),
      () => ""));
    }
    Promise.resolve(contacts.get(id)).then((name) => {
      into.textContent = "";
      if (name) into.append(h("a", { href: `#/contacts/${id}` }, name));
    });
  }

  function newDealForm() {
    const stage = select("stage_id", current.stages.map((s) => [s.id, s.name]));
    const error = h("p.form-error", { role: "alert" });
    const node = h("form.new-deal", { id: "new-deal", hidden: true, "aria-label": "New deal",
      onsubmit: async (event) => {
        event.preventDefault();
        const submit = node.querySelector("button[type=submit]");
        const name = node.elements.name.value.trim();
        const value = node.elements.value.value;
        const payload = { name, pipeline_id: current.id, stage_id: stage.value || undefined };
        if (value !== "") payload.value = Number(value);
        submit.disabled = true;
        try {
          const deal = await ctx.api.post("/v1/deals", payload);
          node.reset();
          error.textContent = "";
          ctx.toast(`Deal “${deal.name}” created`);
          refetch();
        } catch (failure) {
          showError(node, failure);
        } finally {
          submit.disabled = false;
        }
      } },
    h("div.form-row",
      field("Title", text("name", { required: true, maxlength: "255" })),
      field("Value", h("input", { name: "value", type: "number", min: "0", step: "0.01" })),
      field("Stage", stage)),
    error, h("button.primary", { type: "submit" }, "Create deal"));
    return node;
  }

  const off = ctx.live.on("*", (frame) => {
    const kind = frame.event_type || "";
    if (kind.startsWith("deal.")) {
      const where = frame.data?.pipeline_id;
      if (where && where !== current.id && !(board && stageOf(frame.data.deal_id || frame.data.id))) {
        return; // another pipeline's deal
      }
      refetch();
    } else if (kind.startsWith("pipeline.") || kind.startsWith("stage.")) {
      refetch();
    }
  });
  load();
  return () => {
    alive = false;
    clearTimeout(timer);
    off();
  };
}

function currencyOf(stages) {
  for (const stage of stages) {
    for (const deal of stage.deals) if (deal.currency) return deal.currency;
  }
  return "USD";
}
