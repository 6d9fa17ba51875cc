// Connector detail: settings, state, Enable/Disable, key rotation, signing key, logs.

import { api, logPages, seg } from "./api.js";
import { confirmDialog, errorBox, field, h, pageHeader, show, statusDot, statusLabel, table, when } from "./dom.js";
import { typeName } from "./sources.js";
import { keyShownOnce, testReport } from "./wizard.js";

const STATE_STATUS = { active: "green", idle: "yellow", error: "red", disabled: "grey" };
const LOG_PAGE = 50;
const SETTING_NAMES = {
  itemKey: "Item key", fieldMapping: "Field mapping", upsertMode: "Upsert mode", keyId: "Key id",
  signing: "Signing", auth: "Auth", successStatus: "Success status", dedup: "Dedup", sourceHeader: "Source header",
  rateLimit: "Rate limit", idempotencyWindowSeconds: "Idempotency window (s)", idleAfterSeconds: "Idle after (s)", settings: "Settings",
};

/** Renders connector `id` into `view`. */
export function render(view, id) {
  const path = `/api/admin/connectors/${seg(id)}`;
  const top = h("div", { "aria-live": "polite" }, h("p", { class: "muted" }, "Loading…"));
  const tools = h("div");
  const logs = h("section", { "aria-labelledby": "logs-title" });
  view.append(top, tools, logs);
  let shownKey = null;

  // The overview refreshes every few seconds; the forms below it only after an action,
  // so that what the operator types or chooses stays.
  const load = async (withTools) => {
    try {
      const { connector } = await api("GET", path);
      top.replaceChildren(...overview(connector));
      if (withTools) {
        const push = connector.type === "webhook" || connector.type === "api";
        tools.replaceChildren(push ? signingForm(connector) : testForm(connector));
      }
    } catch (error) {
      top.replaceChildren(pageHeader("Connector"), errorBox(error), h("a", { href: "#/sources" }, "Back to Data Sources"));
    }
  };

  const act = async (method, suffix, body) => {
    try {
      const answer = await api(method, `${path}${suffix}`, body);
      await load(true);
      return answer;
    } catch (error) {
      top.prepend(errorBox(error));
      return null;
    }
  };

  const overview = (c) => {
    const status = STATE_STATUS[c.state] || "grey";
    const push = c.type === "webhook" || c.type === "api";
    const buttons = [
      c.enabled
        ? h("button", { type: "button", class: "secondary", onclick: () => act("POST", "/disable") }, "Disable")
        : h("button", { type: "button", class: "primary", onclick: () => act("POST", "/enable") }, "Enable"),
      push ? h("button", { type: "button", class: "secondary", onclick: async () => {
        if (!(await confirmDialog(`Rotate the ingest key of ${c.name}? The current key stops working at once.`, "Rotate key"))) return;
        const answer = await act("POST", "/rotate-key");
        if (answer) { shownKey = answer; showKey(); }
      } }, "Rotate key") : null,
      h("button", { type: "button", class: "danger", onclick: async () => {
        if (!(await confirmDialog(`Delete ${c.name}? Its items stay in stream ${c.stream}.`, "Delete connector"))) return;
        try {
          await api("DELETE", path);
          location.hash = "#/sources";
        } catch (error) {
          top.prepend(errorBox(error));
        }
      } }, "Delete"),
    ];
    const settings = { ...c };
    for (const key of ["id", "name", "type", "stream", "state", "enabled", "createdAt", "updatedAt"]) delete settings[key];
    const parts = [
      pageHeader(c.name, ...buttons),
      h("p", {}, statusDot(status, statusLabel(status)), " ", h("span", { class: "muted" }, `${typeName(c.type)} → `), h("a", { href: `#/explorer/${encodeURIComponent(c.stream)}` }, c.stream)),
      h("dl", { class: "summary" },
        h("dt", {}, "State"), h("dd", { id: "connector-state" }, c.state),
        h("dt", {}, "Id"), h("dd", {}, c.id),
        h("dt", {}, "Created"), h("dd", {}, when(c.createdAt)),
        h("dt", {}, "Changed"), h("dd", {}, when(c.updatedAt)),
        Object.entries(settings).map(([key, value]) => [h("dt", {}, SETTING_NAMES[key] || key), h("dd", {}, h("code", {}, show(value)))])),
    ];
    return parts;
  };

  const showKey = () => {
    if (!shownKey) return;
    const dialogBox = h("section", { class: "card", "aria-label": "New ingest key" }, ...keyShownOnce(shownKey.connector, shownKey.ingestKey));
    dialogBox.querySelector(".actions").replaceChildren(h("button", { type: "button", class: "primary", onclick: () => { shownKey = null; dialogBox.remove(); } }, "I have copied the key"));
    top.append(dialogBox);
    dialogBox.querySelector("h2").focus();
  };

  const signingForm = (c) => {
    const secret = h("input", { type: "password", autocomplete: "off" });
    const form = h("form", { class: "card" },
      h("h2", {}, "Signing key"),
      h("p", { class: "muted" }, c.signing && c.signing.secretSet
        ? `Pushes must be signed (${c.signing.scheme}). The key is set and never shown again.`
        : "Pushes need no signature."),
      field(c.signing ? "New signing key" : "Signing key", secret, "HMAC-SHA256 over \"<timestamp>.<body>\" in X-Webhook-Signature."),
      h("div", { class: "actions" },
        h("button", { type: "submit", class: "primary" }, c.signing ? "Replace signing key" : "Require signing"),
        c.signing ? h("button", { type: "button", class: "secondary", onclick: () => act("PATCH", "", { signing: null }) }, "Turn signing off") : null));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (secret.value) act("PATCH", "", { signing: { scheme: (c.signing && c.signing.scheme) || "inspire", secret: secret.value } });
    });
    return form;
  };

  /** Test (and, for an upload connector, upload) without leaving the page. */
  const testForm = (c) => {
    const uploads = c.type === "file" && c.settings && c.settings.source && c.settings.source.kind === "upload";
    const file = uploads ? h("input", { type: "file" }) : null;
    const result = h("div", { id: "test-result", "aria-live": "polite" });
    const send = async (button, suffix, show) => {
      const chosen = file && file.files[0];
      if (uploads && !chosen) {
        result.replaceChildren(errorBox(new Error("Choose a file first.")));
        return;
      }
      button.disabled = true;
      result.replaceChildren(h("p", { class: "muted" }, "Working…"));
      try {
        const query = chosen ? `?filename=${encodeURIComponent(chosen.name)}` : "";
        result.replaceChildren(...show(await api("POST", `${path}/${suffix}${query}`, chosen || undefined)));
      } catch (error) {
        result.replaceChildren(errorBox(error));
      } finally {
        button.disabled = false;
      }
    };
    const test = h("button", { type: "button", class: "secondary", onclick: () => send(test, "test", (a) => testReport(a.test)) }, "Run test");
    const upload = uploads ? h("button", { type: "button", class: "primary", onclick: () => send(upload, "upload", ({ import: done }) =>
      [h("p", { role: "status" }, `Imported ${done.file}: ${done.items} items, ${done.changed} changed, ${done.deleted} deleted.`)]) }, "Upload file") : null;
    return h("section", { class: "card", "aria-labelledby": "test-title" },
      h("h2", { id: "test-title" }, uploads ? "Upload and test" : "Test"),
      h("p", { class: "muted" }, "A test fetches once and shows what would be stored, without storing anything."),
      file ? field("File", file) : null,
      h("div", { class: "actions" }, test, upload), result);
  };

  load(true);
  renderLogs(logs, `${path}/logs`);
  const timer = setInterval(() => { if (!shownKey) load(false); }, 5000);
  return () => clearInterval(timer);
}

function renderLogs(section, path) {
  const level = h("select", {}, ["", "info", "warn", "error"].map((v) => h("option", { value: v }, v || "All levels")));
  const event = h("input", { type: "search", placeholder: "e.g. push, rejected, error" });
  const list = h("div", { "aria-live": "polite" });
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Load older entries");
  const pages = logPages(path, LOG_PAGE);
  const draw = () => {
    const { entries } = pages;
    const shown = entries.filter((e) => (!level.value || e.level === level.value) && (!event.value || e.event.includes(event.value.trim())));
    list.replaceChildren(shown.length === 0
      ? h("p", { class: "empty" }, entries.length === 0 ? "No log entries yet." : "No entries match the filters.")
      : h("div", { class: "scroll" }, table("Connector log", ["Time", "Level", "Event", "Message", "Items", "Duration"],
        shown.map((e) => [when(e.at), h("span", { class: `level-${e.level}` }, e.level), e.event, e.message, e.items ?? "", e.durationMs === undefined ? "" : `${e.durationMs} ms`]))));
    more.hidden = !pages.more();
  };
  const fetchPage = async (reset) => {
    try {
      await pages.load(reset);
      draw();
    } catch (error) {
      list.replaceChildren(errorBox(error));
    }
  };
  level.addEventListener("change", draw);
  event.addEventListener("input", draw);
  more.addEventListener("click", () => fetchPage(false));
  section.append(h("h2", { id: "logs-title" }, "Log"),
    h("div", { class: "filters" }, field("Level", level), field("Event", event),
      h("button", { type: "button", class: "secondary", onclick: () => fetchPage(true) }, "Refresh log")),
    list, more);
  fetchPage(true);
}
