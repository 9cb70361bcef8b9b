// Form parts shared by the settings sections and the pipeline's new-deal
// form: a labelled field, reading a form into a nested body by the inputs'
// dotted names, and showing the API's error next to the field it names.
// A 422 names fields two ways: our own errors as details.field
// ("config.callback_url"), schema errors as a list of pydantic `loc`s
// (["body", "telegram", "config", "bot_token"]); both become the input whose
// `name` is that dotted path, so the message sits where the mistake is.

import { h } from "../dom.js";

let counter = 0;

/** A unique id for a label's `for` (forms can be shown twice on a page). */
export function uid(prefix) {
  counter += 1;
  return `${prefix}-${counter}`;
}

/** <div.field><label for>…</label><input>… <small>hint</small><small.field-error></div> */
export function field(label, control, hint) {
  if (!control.id) control.id = uid("f");
  const error = h("small.field-error", { id: `${control.id}-error`, role: "alert" });
  control.setAttribute("aria-describedby", error.id);
  const isCheck = control.type === "checkbox";
  const labelNode = h("label", { for: control.id }, label);
  return h(isCheck ? "div.field.check" : "div.field",
    isCheck ? [control, labelNode] : [labelNode, control], hint ? h("small", hint) : null, error);
}

export function text(name, attrs = {}) {
  return h("input", { name, type: "text", autocomplete: "off", ...attrs });
}

export function select(name, options, attrs = {}) {
  return h("select", { name, ...attrs },
    options.map(([value, label]) => h("option", { value }, label)));
}

/** A form's values as a nested object: `config.imap.port` -> {config: {imap: {port}}}.
 * Empty text is left out (the API's defaults apply); numbers and checkboxes typed. */
export function read(form) {
  const body = {};
  for (const control of form.querySelectorAll("input[name], select[name], textarea[name]")) {
    if (control.dataset.skip !== undefined) continue;
    let value;
    if (control.type === "checkbox") value = control.checked;
    else if (control.type === "number") value = control.value === "" ? undefined : Number(control.value);
    else value = control.value.trim() === "" ? undefined : control.value.trim();
    if (value === undefined) continue;
    const path = control.name.split(".");
    let into = body;
    for (const key of path.slice(0, -1)) into = into[key] ??= {};
    into[path.at(-1)] = value;
  }
  return body;
}

/** Clear what `showError` marked. */
export function clearErrors(form) {
  for (const node of form.querySelectorAll(".field-error")) node.textContent = "";
  for (const node of form.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
  const summary = form.querySelector(".form-error");
  if (summary) summary.textContent = "";
}

/** The dotted field names an API error points at, with their messages. */
export function fieldErrors(error, tags = []) {
  const details = error?.details;
  if (details && !Array.isArray(details) && typeof details.field === "string") {
    return [[details.field, error.message]];
  }
  if (!Array.isArray(details)) return [];
  return details.filter((d) => Array.isArray(d.loc)).map((d) => {
    const loc = d.loc.filter((part, i) => !(i === 0 && part === "body"))
      .filter((part, i) => !(i === 0 && tags.includes(part)));
    // A list item's error (allowed_origins.2) belongs to the list's field.
    while (loc.length > 1 && typeof loc.at(-1) === "number") loc.pop();
    return [loc.join("."), d.msg];
  });
}

/** The input an error path names: by its whole name, else the input whose
 * name ends the path (the API may say config.callback_url for callback_url). */
function controlFor(form, name) {
  const named = [...form.querySelectorAll("[name]")];
  return named.find((c) => c.name === name) || named.find((c) => name.endsWith(`.${c.name}`));
}

/** Show an API error: next to each named field, and as the form's summary. */
export function showError(form, error, tags = []) {
  clearErrors(form);
  const found = fieldErrors(error, tags);
  let placed = 0;
  for (const [name, message] of found) {
    const control = controlFor(form, name);
    const slot = control && form.querySelector(`#${CSS.escape(control.id)}-error`);
    if (!slot) continue;
    control.setAttribute("aria-invalid", "true");
    slot.textContent = slot.textContent ? `${slot.textContent}; ${message}` : message;
    placed += 1;
  }
  const summary = form.querySelector(".form-error");
  if (summary) {
    const unplaced = found.filter(([name]) => !controlFor(form, name))
      .map(([name, message]) => `${name || "body"}: ${message}`);
    summary.textContent = [error.message, ...unplaced].join(" — ");
  }
  return placed;
}

/** A submit handler that disables the button, clears and shows errors. */
export function submitting(form, run, tags = []) {
  return async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    clearErrors(form);
    if (button) button.disabled = true;
    try {
      await run(read(form));
    } catch (error) {
      showError(form, error, tags);
    } finally {
      if (button) button.disabled = false;
    }
  };
}

/** A secret shown once: read-only text with a copy button and a warning. */
export function shownOnce(label, value) {
  const box = h("input.secret", { type: "text", readonly: true, value, "aria-label": label });
  const copy = h("button.secondary", { type: "button", onclick: async () => {
    try {
      await navigator.clipboard.writeText(value);
      copy.textContent = "Copied";
    } catch {
      box.select(); // no clipboard permission: selected for Ctrl+C
      copy.textContent = "Press Ctrl+C";
    }
  } }, "Copy");
  return h("div.shown-once", { role: "status" },
    h("strong", label), h("div.secret-row", box, copy),
    h("small", "Shown this once: copy it now, it cannot be read again."));
}
