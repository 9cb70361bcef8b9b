// Creating an account from the sign-in page: a person, a password and their
// own organization (`POST /v1/auth/register`), then straight in. Someone
// invited elsewhere creates theirs here and then opens the invitation link.

import { publicPost } from "./api.js";
import { h } from "./dom.js";

export function registerForm({ session, enter, back }) {
  const input = (id, attrs) => h("input", { id, required: true, ...attrs });
  const name = input("register-name", { name: "name", autocomplete: "name", maxlength: "255" });
  const email = input("register-email", { type: "email", autocomplete: "email" });
  const password = input("register-password", { type: "password", minlength: "8",
                                                autocomplete: "new-password" });
  const org = input("register-org", { name: "organization", maxlength: "255",
                                      autocomplete: "organization" });
  const error = h("p.form-error", { role: "alert" });
  const submit = h("button.primary", { type: "submit" }, "Create account");
  const row = (id, label, control, hint) => h("div.field", h("label", { for: id }, label),
    control, hint ? h("small", hint) : null);
  const form = h("form.signin", { "aria-labelledby": "register-title", onsubmit: async (event) => {
    event.preventDefault();
    error.textContent = "";
    submit.disabled = true;
    try {
      session.adopt(await publicPost("/v1/auth/register", {
        name: name.value.trim(), email: email.value.trim(), password: password.value,
        organization_name: org.value.trim() }));
      await enter();
    } catch (failure) {
      error.textContent = failure.status === 409 ? "An account with this email exists: sign in."
        : failure.message;
    } finally {
      submit.disabled = false;
    }
  } },
  h("h1", { id: "register-title" }, "Create a Bidi account"),
  row("register-name", "Your name", name),
  row("register-email", "Email", email),
  row("register-password", "Password", password, "At least 8 characters."),
  row("register-org", "Organization", org, "Yours to start with; invitations add others."),
  error, submit,
  h("div.signin-alt", h("button.link", { type: "button", onclick: back },
    "I have an account: sign in")));
  return form;
}
