// Webhooks: subscriptions that push DataPool changes to other systems, their delivery
// log and re-sending.

import { api, logPages, seg } from "./api.js";
import { confirmDialog, copyButton, errorBox, field, h, pageHeader, statusDot, table, when } from "./dom.js";

const EVENTS = ["item.created", "item.updated", "item.deleted", "connector.error", "connector.recovered"];
const BASE = "/api/admin/subscriptions";

function activeDot(s) {
  return statusDot(s.active ? "green" : "grey", s.active ? "Active" : "Inactive");
}

/** Renders the subscriptions list into `view`. */
export function render(view) {
  const body = h("div", { "aria-live": "polite" }, h("p", { class: "muted" }, "Loading subscriptions…"));
  view.append(pageHeader("Webhooks", h("a", { class: "button primary", href: "#/webhooks/new" }, "New subscription")), body);
  const load = async () => {
    try {
      const { subscriptions } = await api("GET", BASE);
      body.replaceChildren(listOf(subscriptions, load, body));
    } catch (error) {
      body.replaceChildren(errorBox(error));
    }
  };
  load();
}

function listOf(subscriptions, reload, body) {
  if (subscriptions.length === 0) {
    return h("div", { class: "empty" }, h("p", {}, "No subscriptions yet."),
      h("p", { class: "muted" }, "A subscription sends a signed POST to a URL whenever items change or a connector fails."));
  }
  subscriptions.sort((a, b) => a.name.localeCompare(b.name));
  const result = table("Subscriptions", ["Name", "Status", "URL", "Events", "Actions"], subscriptions.map((s) => [
    h("a", { href: `#/webhooks/${encodeURIComponent(s.id)}`, class: "strong" }, s.name),
    activeDot(s), h("code", { class: "url" }, s.url), s.events.join(", "),
    h("div", { class: "row-actions" }, actionButtons(s, reload, (error) => body.prepend(errorBox(error)))),
  ]));
  result.id = "subscriptions";
  [...result.tBodies[0].rows].forEach((tr, i) => { tr.dataset.subscription = subscriptions[i].id; });
  return h("div", { class: "scroll" }, result);
}

/** Activate or Deactivate, and Delete (confirmed in a dialog). */
function actionButtons(s, reload, fail, deleted = reload) {
  const run = async (method, suffix) => {
    try {
      await api(method, `${BASE}/${seg(s.id)}${suffix}`);
      return true;
    } catch (error) {
      fail(error);
      return false;
    }
  };
  return [
    s.active
      ? h("button", { type: "button", class: "secondary", "aria-label": `Deactivate ${s.name}`, onclick: async () => { if (await run("POST", "/deactivate")) reload(); } }, "Deactivate")
      : h("button", { type: "button", class: "secondary", "aria-label": `Activate ${s.name}`, onclick: async () => { if (await run("POST", "/activate")) reload(); } }, "Activate"),
    h("button", { type: "button", class: "danger", "aria-label": `Delete ${s.name}`, onclick: async () => {
      if (!(await confirmDialog(`Delete the subscription ${s.name}? Its pending deliveries are dropped.`, "Delete subscription"))) return;
      if (await run("DELETE", "")) deleted();
    } }, "Delete"),
  ];
}

/** Renders the create form, or the edit form of subscription `id`. */
export function renderForm(view, id) {
  view.append(pageHeader(id ? "Edit subscription" : "New subscription"));
  const box = h("div", {});
  view.append(box);
  if (!id) {
    box.append(form(null));
    return;
  }
  api("GET", `${BASE}/${seg(id)}`).then(({ subscription }) => box.append(form(subscription)), (error) => box.append(errorBox(error)));
}

function form(existing) {
  const s = existing || { name: "", url: "", events: ["item.created", "item.updated"], streams: null, basicAuth: null, active: true };
  const name = h("input", { type: "text", required: true, value: s.name, maxlength: "200" });
  const url = h("input", { type: "url", required: true, value: s.url, spellcheck: "false" });
  const events = EVENTS.map((event) => h("label", { class: "check" }, h("input", { type: "checkbox", value: event, checked: s.events.includes(event) }), " ", event));
  const streams = h("input", { type: "text", value: (s.streams || []).join(", "), spellcheck: "false" });
  const username = h("input", { type: "text", value: s.basicAuth ? s.basicAuth.username : "", autocomplete: "off" });
  const password = h("input", { type: "password", autocomplete: "new-password" });
  const sign = existing ? null : h("input", { type: "checkbox", checked: true });
  const status = h("div", { "aria-live": "polite" });
  const el = h("form", { class: "card" },
    field("Name", name), field("URL", url, "Where each change is POSTed; https or http."),
    h("fieldset", {}, h("legend", {}, "Events"), events),
    field("Streams (optional)", streams, "Comma-separated; empty for every stream."),
    h("fieldset", {}, h("legend", {}, "Basic auth (optional)"), field("Username", username),
      field(existing && existing.basicAuth && existing.basicAuth.passwordSet ? "Password (set; type to replace)" : "Password", password)),
    sign ? h("div", { class: "field inline" }, h("label", {}, sign, " Sign deliveries (Standard Webhooks; a secret is generated and shown once)")) : null,
    status,
    h("div", { class: "actions" },
      h("a", { class: "button secondary", href: existing ? `#/webhooks/${encodeURIComponent(existing.id)}` : "#/webhooks" }, "Cancel"),
      h("button", { type: "submit", class: "primary" }, existing ? "Save subscription" : "Create subscription")));
  el.addEventListener("submit", async (event) => {
    event.preventDefault();
    status.replaceChildren();
    const chosen = events.map((label) => label.querySelector("input")).filter((box) => box.checked).map((box) => box.value);
    if (chosen.length === 0) {
      status.append(errorBox(new Error("Choose at least one event.")));
      return;
    }
    const doc = { name: name.value.trim(), url: url.value.trim(), events: chosen };
    const list = streams.value.split(",").map((x) => x.trim()).filter(Boolean);
    doc.streams = list.length ? list : null;
    if (username.value.trim()) {
      doc.basicAuth = { username: username.value.trim() };
      if (password.value) doc.basicAuth.password = password.value;
    } else {
      doc.basicAuth = null;
    }
    try {
      if (existing) {
        await api("PATCH", `${BASE}/${seg(existing.id)}`, doc);
        location.hash = `#/webhooks/${encodeURIComponent(existing.id)}`;
        return;
      }
      if (!doc.streams) delete doc.streams;
      if (!doc.basicAuth) delete doc.basicAuth;
      if (sign.checked) doc.secret = "generate";
      const answer = await api("POST", BASE, doc);
      if (answer.secret) {
        el.replaceWith(h("section", { class: "card" },
          h("h2", {}, `${answer.subscription.name} is active`),
          h("p", { class: "warning" }, "Copy the signing secret now: it is shown only this once."),
          field("Signing secret", h("input", { type: "text", readonly: true, value: answer.secret })), copyButton(answer.secret, "signing secret"),
          h("div", { class: "actions" }, h("a", { class: "button primary", href: "#/webhooks" }, "Done"))));
      } else {
        location.hash = "#/webhooks";
      }
    } catch (error) {
      status.append(errorBox(error));
    }
  });
  return el;
}

/** Renders subscription `id`: settings, actions and its delivery log. */
export function renderDetail(view, id) {
  const top = h("div", { "aria-live": "polite" }, h("p", { class: "muted" }, "Loading…"));
  const log = h("section", { "aria-labelledby": "deliveries-title" });
  view.append(top, log);
  const load = async () => {
    let s;
    try {
      ({ subscription: s } = await api("GET", `${BASE}/${seg(id)}`));
    } catch (error) {
      top.replaceChildren(pageHeader("Subscription"), errorBox(error), h("a", { href: "#/webhooks" }, "Back to Webhooks"));
      return;
    }
    top.replaceChildren(
      pageHeader(s.name, h("a", { class: "button secondary", href: `#/webhooks/${encodeURIComponent(id)}/edit` }, "Edit"),
        ...actionButtons(s, load, (error) => top.prepend(errorBox(error)), () => { location.hash = "#/webhooks"; })),
      h("p", {}, activeDot(s)),
      h("dl", { class: "summary" },
        h("dt", {}, "URL"), h("dd", {}, h("code", {}, s.url)),
        h("dt", {}, "Events"), h("dd", {}, s.events.join(", ")),
        h("dt", {}, "Streams"), h("dd", {}, s.streams && s.streams.length ? s.streams.join(", ") : "All"),
        h("dt", {}, "Basic auth"), h("dd", {}, s.basicAuth ? `${s.basicAuth.username}${s.basicAuth.passwordSet ? " (password set)" : ""}` : "None"),
        h("dt", {}, "Signed"), h("dd", {}, s.secretSet ? "Yes (Standard Webhooks)" : "No"),
        h("dt", {}, "Created"), h("dd", {}, when(s.createdAt))));
  };
  load();
  renderDeliveries(log, id, top);
}

function renderDeliveries(section, id, top) {
  const list = h("div", { "aria-live": "polite" });
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Load older deliveries");
  const pages = logPages(`${BASE}/${seg(id)}/deliveries`, 50);
  const fetchPage = async (reset) => {
    try {
      await pages.load(reset);
    } catch (error) {
      list.replaceChildren(errorBox(error));
      return;
    }
    const { entries } = pages;
    more.hidden = !pages.more();
    list.replaceChildren(entries.length === 0 ? h("p", { class: "empty" }, "No deliveries yet.")
      : h("div", { class: "scroll" }, table("Deliveries", ["Time", "Event", "Attempt", "Status", "Latency", "Error", "Action"], entries.map((e) => [
        when(e.at), e.eventCode, String(e.attempt), e.status === null ? "no answer" : String(e.status),
        e.latencyMs === null || e.latencyMs === undefined ? "" : `${e.latencyMs} ms`, e.error || "",
        h("button", { type: "button", class: "secondary", "aria-label": `Re-send ${e.messageId}`, onclick: async () => {
          try {
            await api("POST", `${BASE}/${seg(id)}/deliveries/${seg(e.id)}/resend`);
            setTimeout(() => fetchPage(true), 1000);
          } catch (error) {
            top.prepend(errorBox(error));
          }
        } }, "Re-send"),
      ]))));
  };
  more.addEventListener("click", () => fetchPage(false));
  section.append(h("h2", { id: "deliveries-title" }, "Delivery log"),
    h("button", { type: "button", class: "secondary", onclick: () => fetchPage(true) }, "Refresh delivery log"), list, more);
  fetchPage(true);
}
