// Data Sources: every connector with its status, refreshed every few seconds.

import { api } from "./api.js";
import { errorBox, h, pageHeader, statusDot, statusLabel, table, when } from "./dom.js";

/** How often the list refreshes, in milliseconds. */
const REFRESH_MS = 3000;

const TYPE_NAMES = { webhook: "Webhook", api: "Ingest API", sql: "SQL", file: "File" };

/** The name of a connector type. */
export function typeName(type) {
  return TYPE_NAMES[type] || type;
}

/** Renders the Data Sources page into `view`; returns what stops its refreshing. */
export function render(view) {
  const body = h("div", { "aria-live": "polite", "aria-busy": "true" }, h("p", { class: "muted" }, "Loading data sources…"));
  view.append(
    pageHeader("Data Sources", h("a", { class: "button primary", href: "#/sources/new" }, "New connector")),
    body);
  const refresh = async () => {
    try {
      const { connectors } = await api("GET", "/api/admin/monitoring");
      body.replaceChildren(listOf(connectors));
    } catch (error) {
      body.replaceChildren(errorBox(error));
    }
    body.setAttribute("aria-busy", "false");
  };
  refresh();
  const timer = setInterval(refresh, REFRESH_MS);
  return () => clearInterval(timer);
}

function listOf(connectors) {
  if (connectors.length === 0) {
    return h("div", { class: "empty" },
      h("p", {}, "No data sources yet."),
      h("p", { class: "muted" }, "Create a connector to receive webhooks, take pushes from the ingest API, or poll a database or a file."));
  }
  connectors.sort((a, b) => a.name.localeCompare(b.name));
  const rows = connectors.map((c) => [
    h("a", { href: `#/connectors/${encodeURIComponent(c.id)}`, class: "strong" }, c.name),
    statusDot(c.status, statusLabel(c.status)),
    typeName(c.type),
    h("a", { href: `#/explorer/${encodeURIComponent(c.stream)}` }, c.stream),
    when(c.lastSuccessAt),
    String(c.itemCount),
    h("span", { class: c.errors24h > 0 ? "bad" : "" }, String(c.errors24h)),
  ]);
  const result = table("Connectors and their status", ["Name", "Status", "Type", "Stream", "Last successful fetch", "Items", "Errors (24 h)"], rows);
  result.id = "sources";
  for (const [i, tr] of [...result.tBodies[0].rows].entries()) tr.dataset.connector = connectors[i].id;
  return h("div", { class: "scroll" }, result);
}
