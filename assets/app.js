// The page's shell: sign-in, navigation and the hash routes that pick a page.

import { resumeSession, signIn, signOut } from "./api.js";
import { errorBox, field, h } from "./dom.js";
import * as sources from "./sources.js";
import * as connector from "./connector.js";
import * as wizard from "./wizard.js";
import * as explorer from "./explorer.js";
import * as webhooks from "./webhooks.js";

const view = document.getElementById("view");
const nav = document.getElementById("nav");
const signOutButton = document.getElementById("sign-out");
let signedIn = false;
let leave = null;

/** Hash routes: pattern → [nav section, page]. A page returns its cleanup, if any. */
const ROUTES = [
  [/^#\/sources$/, "sources", sources.render],
  [/^#\/sources\/new$/, "sources", wizard.render],
  [/^#\/connectors\/([^/]+)$/, "sources", connector.render],
  [/^#\/explorer(?:\/([^/]+))?(?:\/(.+))?$/, "explorer", explorer.render],
  [/^#\/webhooks$/, "webhooks", webhooks.render],
  [/^#\/webhooks\/new$/, "webhooks", webhooks.renderForm],
  [/^#\/webhooks\/([^/]+)\/edit$/, "webhooks", webhooks.renderForm],
  [/^#\/webhooks\/([^/]+)$/, "webhooks", webhooks.renderDetail],
];

function renderSignIn(message) {
  const input = h("input", { type: "password", name: "token", autocomplete: "current-password", required: true, spellcheck: "false" });
  const status = h("div", { "aria-live": "polite" }, message ? errorBox(new Error(message)) : null);
  const form = h("form", { class: "card narrow", "aria-labelledby": "sign-in-title" },
    h("h1", { id: "sign-in-title" }, "Sign in"),
    h("p", { class: "muted" }, "Use the admin token: the file admin-token in the server's data directory."),
    field("Admin token", input),
    status,
    h("button", { type: "submit", class: "primary" }, "Sign in"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status.replaceChildren();
    try {
      await signIn(input.value.trim());
      input.value = "";
      setSignedIn(true);
      if (location.hash === "#/sources") route(); else location.hash = "#/sources";
    } catch (error) {
      status.replaceChildren(errorBox(error));
    }
  });
  view.replaceChildren(form);
  input.focus();
}

function setSignedIn(yes) {
  signedIn = yes;
  nav.hidden = !yes;
  signOutButton.hidden = !yes;
}

function route() {
  if (leave) leave();
  leave = null;
  if (!signedIn) {
    renderSignIn();
    return;
  }
  const hash = location.hash || "#/sources";
  for (const [pattern, section, render] of ROUTES) {
    const match = hash.match(pattern);
    if (!match) continue;
    for (const link of nav.querySelectorAll("a")) {
      if (link.dataset.page === section) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    const params = match.slice(1).map((part) => (part === undefined ? undefined : decodeURIComponent(part)));
    view.replaceChildren();
    leave = render(view, ...params) || null;
    const heading = view.querySelector("h1");
    if (heading) heading.focus({ preventScroll: true });
    return;
  }
  location.hash = "#/sources";
}

signOutButton.addEventListener("click", async () => {
  try {
    await signOut();
  } catch {
    // The session is gone either way; the sign-in page follows.
  }
  setSignedIn(false);
  route();
});

window.addEventListener("signed-out", () => {
  if (leave) leave();
  leave = null;
  setSignedIn(false);
  renderSignIn("Your session has ended. Sign in again.");
});

window.addEventListener("hashchange", route);

resumeSession().then((yes) => {
  setSignedIn(yes);
  route();
});

