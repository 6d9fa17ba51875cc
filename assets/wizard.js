// New connector: type → configure → map → test → save & activate. The ingest key of a
// push connector is shown once at the end, with its endpoint and a curl example.

import { api, seg } from "./api.js";
import { copyButton, errorBox, field, h, pageHeader, show, table } from "./dom.js";
import { typeName } from "./sources.js";

const STEPS = ["Type", "Configure", "Map", "Test", "Save"];
const STREAM_NAME = "[a-z0-9][a-z0-9_.\\-]{0,63}";

const TYPES = [
  ["webhook", "Receive JSON pushed by another system to /api/webhook/{stream}."],
  ["api", "Premium or custom integrations pushing items with ids to /api/ingest."],
  ["sql", "Poll a PostgreSQL, MySQL/MariaDB, SQLite or SQL Server query."],
  ["file", "Read CSV, Excel, JSON or XML from an upload, a URL or a watched folder."],
];

/** Renders the wizard into `view`. */
export function render(view) {
  const draft = { type: "webhook", upsertMode: "merge", mapping: [], settings: {} };
  const steps = h("ol", { class: "steps" }, STEPS.map((name) => h("li", {}, name)));
  const panel = h("div", { class: "card" });
  const wizard = { draft, panel, created: null, show: (n) => showStep(wizard, steps, n) };
  const cancel = h("button", { type: "button", class: "secondary", onclick: async () => {
    // A pull connector saved paused for its test is not kept when the wizard is left.
    if (wizard.created) {
      try {
        await api("DELETE", `/api/admin/connectors/${seg(wizard.created)}`);
      } catch (error) {
        panel.prepend(errorBox(error));
        return;
      }
    }
    location.hash = "#/sources";
  } }, "Cancel");
  view.append(pageHeader("New connector", cancel), steps, panel);
  wizard.show(0);
}

function showStep(wizard, steps, n) {
  [...steps.children].forEach((li, i) => {
    li.className = i === n ? "current" : i < n ? "done" : "";
    if (i === n) li.setAttribute("aria-current", "step"); else li.removeAttribute("aria-current");
  });
  wizard.panel.replaceChildren(...[typeStep, configureStep, mapStep, testStep, saveStep][n](wizard));
  const first = wizard.panel.querySelector("h2");
  if (first) first.focus();
}

function nav(wizard, back, next, nextLabel = "Next", check = () => true) {
  const buttons = [];
  if (back !== null) buttons.push(h("button", { type: "button", class: "secondary", onclick: () => wizard.show(back) }, "Back"));
  buttons.push(h("button", { type: "submit", class: "primary" }, nextLabel));
  return { buttons: h("div", { class: "actions" }, buttons), submit: (form) => form.addEventListener("submit", (e) => { e.preventDefault(); if (check()) wizard.show(next); }) };
}

function step(wizard, title, body, back, next, nextLabel, check) {
  const n = nav(wizard, back, next, nextLabel, check);
  const form = h("form", {}, h("h2", { tabindex: "-1" }, title), body, n.buttons);
  n.submit(form);
  return [form];
}

function typeStep(wizard) {
  const choices = TYPES.map(([type, about]) => h("label", { class: "choice" },
    h("input", { type: "radio", name: "type", value: type, checked: wizard.draft.type === type, onchange: () => { wizard.draft.type = type; } }),
    h("span", {}, h("strong", {}, typeName(type)), h("span", { class: "muted" }, about))));
  const body = h("fieldset", {}, h("legend", {}, "Where does the data come from?"), choices);
  return step(wizard, "1. Choose a type", body, null, 1);
}

function input(draft, key, attrs = {}) {
  const el = h("input", { type: "text", value: draft[key] ?? "", ...attrs });
  el.addEventListener("input", () => { draft[key] = el.type === "number" ? el.valueAsNumber : el.value; });
  return el;
}

function checkbox(draft, key, label) {
  const el = h("input", { type: "checkbox", checked: draft[key] !== false });
  el.addEventListener("change", () => { draft[key] = el.checked; });
  return h("div", { class: "field inline" }, h("label", {}, el, " ", label));
}

function select(draft, key, options) {
  const el = h("select", {}, options.map(([value, label]) => h("option", { value, selected: draft[key] === value }, label)));
  el.addEventListener("change", () => { draft[key] = el.value; });
  if (draft[key] === undefined) draft[key] = options[0][0];
  return el;
}

function configureStep(wizard) {
  const { draft } = wizard;
  const s = draft.settings;
  const fields = [field("Name", input(draft, "name", { required: true, maxlength: "200" }), "Shown in Data Sources; unique.")];
  if (draft.type === "webhook" || draft.type === "api") {
    fields.push(
      field("Signing secret (optional)", input(draft, "signingSecret", { type: "password", autocomplete: "off" }),
        "When set, every push must carry X-Webhook-Timestamp and X-Webhook-Signature (HMAC-SHA256). Leave empty for none."),
      field("Success status", select(draft, "successStatus", [["202", "202 Accepted"], ["200", "200 OK (for senders that expect it)"]])));
  } else if (draft.type === "sql") {
    fields.push(
      field("Connection string", input(s, "connectionString", { required: true, autocomplete: "off", spellcheck: "false" }),
        "postgres://user:pass@host:5432/db, mysql://…, sqlite:///path.db, or an SQL Server ADO.NET string."),
      field("Query", Object.assign(h("textarea", { rows: "4", required: true, spellcheck: "false" }, s.query || ""), { oninput: (e) => { s.query = e.target.value; } }),
        "Parameters @today @now @yesterday @startOfWeek @startOfMonth are bound as values."),
      field("Poll every (seconds)", input(s, "pollIntervalSeconds", { type: "number", min: "1", value: s.pollIntervalSeconds ?? 60 })),
      field("Query timeout (seconds)", input(s, "timeoutSeconds", { type: "number", min: "1", value: s.timeoutSeconds ?? 30 })),
      field("Row cap", input(s, "maxRows", { type: "number", min: "1", value: s.maxRows ?? 10000 })),
      checkbox(s, "mirror", "Mirror: delete this connector's items that the query no longer returns"));
  } else {
    const kind = select(s, "kind", [["url", "Poll a URL"], ["folder", "Watch a folder"], ["upload", "Uploads"]]);
    const where = h("div");
    const showWhere = () => where.replaceChildren(
      s.kind === "url" ? field("File URL", input(s, "url", { type: "url", required: true }))
        : s.kind === "folder" ? field("Folder path", input(s, "path", { required: true }), "Files are moved to processed/ or failed/ under it.")
          : h("p", { class: "muted" }, "Files are sent through the admin API or the Test step."));
    kind.addEventListener("change", showWhere);
    showWhere();
    fields.push(
      field("Format", select(s, "format", [["csv", "CSV"], ["xlsx", "Excel (xlsx)"], ["xls", "Excel (xls)"], ["json", "JSON"], ["xml", "XML"]])),
      field("Source", kind), where,
      field("Poll every (seconds)", input(s, "pollIntervalSeconds", { type: "number", min: "1", value: s.pollIntervalSeconds ?? 300 })),
      field("Sheet (Excel, optional)", input(s, "sheet")),
      field("Delimiter (CSV, optional)", input(s, "delimiter", { maxlength: "1" }), "Detected when empty."),
      field("JSON pointer (JSON, optional)", input(s, "jsonPointer"), "Where the array of records is, e.g. /data/rows."),
      field("XML path (XML)", input(s, "xmlPath"), "The repeated element, e.g. /rows/row."),
      checkbox(s, "mirror", "Mirror: delete this connector's items the file no longer has"));
  }
  return step(wizard, "2. Configure", fields, 0, 2, "Next", () => wizard.panel.querySelector("form").reportValidity());
}

function mapStep(wizard) {
  const { draft } = wizard;
  const rows = h("div", { class: "mapping" });
  const addRow = (pair = { from: "", to: "" }) => {
    if (!draft.mapping.includes(pair)) draft.mapping.push(pair);
    const from = h("input", { type: "text", value: pair.from, oninput: (e) => { pair.from = e.target.value; } });
    const to = h("input", { type: "text", value: pair.to, oninput: (e) => { pair.to = e.target.value; } });
    const row = h("div", { class: "mapping-row" }, field("Source field", from), field("DataPool field", to),
      h("button", { type: "button", class: "secondary", onclick: () => { draft.mapping.splice(draft.mapping.indexOf(pair), 1); row.remove(); } }, "Remove mapping"));
    rows.append(row);
  };
  draft.mapping.forEach(addRow);
  const body = [
    field("Stream", input(draft, "stream", { required: true, pattern: STREAM_NAME, maxlength: "64", spellcheck: "false" }),
      "Lowercase letters, digits, - _ . (up to 64), starting with a letter or digit, e.g. sales-by-region."),
    field("Item key (optional)", input(draft, "itemKey", { spellcheck: "false" }),
      draft.type === "sql" ? "The column that identifies a row; the first column when empty." : "The source field that identifies an item, e.g. id or location.city."),
    field("When an item comes again", select(draft, "upsertMode", [["merge", "Merge: new fields overwrite, others stay"], ["replace", "Replace the whole item"]])),
    h("fieldset", {}, h("legend", {}, "Field mapping (optional)"),
      h("p", { class: "hint" }, "With a mapping, only mapped fields are kept, under their new names."),
      rows, h("button", { type: "button", class: "secondary", onclick: () => addRow() }, "Add mapping")),
  ];
  return step(wizard, "3. Map to the DataPool", body, 1, 3, "Next", () => wizard.panel.querySelector("form").reportValidity());
}

/** The connector document the draft describes (SPEC §1.1). */
function documentOf(draft, enabled) {
  const doc = { name: draft.name.trim(), type: draft.type, stream: draft.stream.trim(), upsertMode: draft.upsertMode, enabled };
  if (draft.itemKey && draft.itemKey.trim()) doc.itemKey = draft.itemKey.trim();
  const mapping = Object.fromEntries(draft.mapping.filter((p) => p.from.trim() && p.to.trim()).map((p) => [p.from.trim(), p.to.trim()]));
  if (Object.keys(mapping).length > 0) doc.fieldMapping = mapping;
  if (draft.type === "webhook" || draft.type === "api") {
    if (draft.signingSecret) doc.signing = { scheme: "inspire", secret: draft.signingSecret };
    doc.successStatus = Number(draft.successStatus || 202);
  } else if (draft.type === "sql") {
    const s = draft.settings;
    doc.settings = { connectionString: s.connectionString, query: s.query, pollIntervalSeconds: num(s.pollIntervalSeconds, 60), timeoutSeconds: num(s.timeoutSeconds, 30), maxRows: num(s.maxRows, 10000), mirror: s.mirror !== false };
  } else {
    const s = draft.settings;
    const source = { kind: s.kind || "url" };
    if (source.kind === "url") source.url = s.url;
    if (source.kind === "folder") source.path = s.path;
    doc.settings = { format: s.format || "csv", source, pollIntervalSeconds: num(s.pollIntervalSeconds, 300), mirror: s.mirror !== false };
    for (const key of ["sheet", "delimiter", "jsonPointer", "xmlPath"]) if (s[key]) doc.settings[key] = s[key];
  }
  return doc;
}

function num(value, fallback) {
  return Number.isFinite(value) ? value : Number(value) || fallback;
}

/** Nested objects flattened to dotted names, as the server stores them (SPEC §1). */
function flatten(value, prefix = "", out = {}) {
  for (const [key, inner] of Object.entries(value)) {
    const name = prefix ? `${prefix}.${key}` : key;
    if (inner && typeof inner === "object" && !Array.isArray(inner)) flatten(inner, name, out);
    else out[name] = inner;
  }
  return out;
}

/** What a push of `payload` would store: items with their ids and fields. */
function preview(draft, payload) {
  const doc = documentOf(draft, true);
  let records;
  if (draft.type === "api") {
    const items = payload && Array.isArray(payload.items) ? payload.items : null;
    if (!items) throw new Error('An ingest API body is {"stream": "…", "items": [{"id": "…", "fields": {…}}]}.');
    records = items.map((item) => ({ id: String(item.id), fields: flatten(item.fields || {}) }));
  } else {
    const list = Array.isArray(payload) ? payload : [payload];
    records = list.map((item, i) => {
      if (!item || typeof item !== "object" || Array.isArray(item)) throw new Error(`Item ${i} is not a JSON object.`);
      const fields = flatten(item);
      let id = String(i);
      if (doc.itemKey) {
        const key = fields[doc.itemKey];
        if (typeof key !== "string" && typeof key !== "number") throw new Error(`Item ${i} has no string or number field ${doc.itemKey}.`);
        id = String(key);
      }
      return { id, fields };
    });
  }
  if (doc.fieldMapping) {
    for (const record of records) {
      record.fields = Object.fromEntries(Object.entries(doc.fieldMapping).filter(([from]) => from in record.fields).map(([from, to]) => [to, record.fields[from]]));
    }
  }
  return records;
}

function sampleTable(items) {
  const names = [...new Set(items.flatMap((item) => Object.keys(item.fields)))];
  return h("div", { class: "scroll" }, table("Sample items", ["Item id", ...names], items.map((item) => [item.id, ...names.map((n) => show(item.fields[n]))])));
}

/** What a server-side test found: counts, fields with their types, sample items. */
export function testReport(test) {
  return [
    h("p", {}, `${test.rowCount} records in ${test.durationMs} ms${test.truncated ? " (more than the row cap)" : ""}.`),
    table("Fields and types", ["Field", "Type"], test.fields.map((f) => [f.name, f.type])),
    sampleTable(test.sample),
  ];
}

function testStep(wizard) {
  const { draft } = wizard;
  const result = h("div", { id: "test-result", "aria-live": "polite" });
  const push = draft.type === "webhook" || draft.type === "api";
  let body;
  if (push) {
    const example = draft.type === "api"
      ? { stream: draft.stream, items: [{ id: "a1", fields: { name: "Ann", calls: 3 } }] }
      : [{ [draft.itemKey || "id"]: "north", sales: 1200, location: { city: "Leeds" } }];
    const sample = h("textarea", { rows: "6", spellcheck: "false" }, draft.sample || JSON.stringify(example, null, 2));
    sample.addEventListener("input", () => { draft.sample = sample.value; });
    body = [
      h("p", { class: "muted" }, "Paste a payload like the sender's to see the items it would store. Nothing is saved."),
      field("Sample payload (JSON)", sample),
      h("button", { type: "button", class: "secondary", onclick: () => {
        try {
          result.replaceChildren(sampleTable(preview(draft, JSON.parse(sample.value))));
        } catch (error) {
          result.replaceChildren(errorBox(error instanceof SyntaxError ? new Error(`The sample is not valid JSON: ${error.message}`) : error));
        }
      } }, "Run test"),
      result,
    ];
  } else {
    const file = draft.settings.kind === "upload" ? h("input", { type: "file" }) : null;
    body = [
      h("p", { class: "muted" }, "The test connects and fetches once without storing anything. The connector is saved paused until you activate it."),
      file ? field("File to test with", file) : null,
      h("button", { type: "button", class: "secondary", onclick: async (event) => {
        event.target.disabled = true;
        result.replaceChildren(h("p", { class: "muted" }, "Testing…"));
        try {
          const id = await savePaused(wizard);
          const query = file && file.files[0] ? `?filename=${encodeURIComponent(file.files[0].name)}` : "";
          const { test } = await api("POST", `/api/admin/connectors/${seg(id)}/test${query}`, file && file.files[0] ? file.files[0] : undefined);
          result.replaceChildren(...testReport(test));
        } catch (error) {
          result.replaceChildren(errorBox(error));
        } finally {
          event.target.disabled = false;
        }
      } }, "Run test"),
      result,
    ];
  }
  return step(wizard, "4. Test", body, 2, 4, "Next");
}

/** Saves a pull connector, paused, so the server can test it; its id. */
async function savePaused(wizard) {
  const doc = documentOf(wizard.draft, false);
  if (wizard.created) {
    await api("PATCH", `/api/admin/connectors/${seg(wizard.created)}`, doc);
  } else {
    const { connector } = await api("POST", "/api/admin/connectors", doc);
    wizard.created = connector.id;
  }
  return wizard.created;
}

function saveStep(wizard) {
  const { draft } = wizard;
  const status = h("div", { "aria-live": "polite" });
  const summary = h("dl", { class: "summary" },
    h("dt", {}, "Type"), h("dd", {}, typeName(draft.type)),
    h("dt", {}, "Name"), h("dd", {}, draft.name),
    h("dt", {}, "Stream"), h("dd", {}, draft.stream),
    h("dt", {}, "Item key"), h("dd", {}, draft.itemKey || "—"));
  const save = h("button", { type: "button", class: "primary" }, "Save & activate");
  const form = h("div", {}, h("h2", { tabindex: "-1" }, "5. Save & activate"), summary, status,
    h("div", { class: "actions" }, h("button", { type: "button", class: "secondary", onclick: () => wizard.show(3) }, "Back"), save));
  save.addEventListener("click", async () => {
    save.disabled = true;
    status.replaceChildren();
    try {
      let answer;
      if (wizard.created) {
        await api("PATCH", `/api/admin/connectors/${seg(wizard.created)}`, documentOf(draft, true));
        location.hash = `#/connectors/${encodeURIComponent(wizard.created)}`;
        return;
      }
      answer = await api("POST", "/api/admin/connectors", documentOf(draft, true));
      if (answer.ingestKey) form.replaceChildren(...keyShownOnce(answer.connector, answer.ingestKey));
      else location.hash = `#/connectors/${encodeURIComponent(answer.connector.id)}`;
    } catch (error) {
      status.replaceChildren(errorBox(error));
      save.disabled = false;
    }
  });
  return [form];
}

/** The ingest key, endpoint and a curl example: shown this once, never again. */
export function keyShownOnce(connector, key) {
  const ingestApi = connector.type === "api";
  const endpoint = `${location.origin}${ingestApi ? "/api/ingest" : `/api/webhook/${encodeURIComponent(connector.stream)}`}`;
  const body = ingestApi
    ? JSON.stringify({ stream: connector.stream, items: [{ id: "a1", fields: { value: 42 } }] })
    : JSON.stringify({ [connector.itemKey || "id"]: "a1", value: 42 });
  const curl = `curl -X POST '${endpoint}' \\\n  -H 'Authorization: Bearer ${key}' \\\n  -H 'Content-Type: application/json' \\\n  -d '${body}'`;
  const readonly = (id, value, label) => field(label, h("input", { id, type: "text", readonly: true, value, spellcheck: "false" }));
  return [
    h("h2", { tabindex: "-1" }, `${connector.name} is active`),
    h("p", { class: "warning", role: "status" }, "Copy the ingest key now: it is shown only this once. If it is lost, rotate it on the connector's page."),
    readonly("ingest-key", key, "Ingest key"), copyButton(key, "ingest key"),
    readonly("endpoint", endpoint, "Endpoint URL"), copyButton(endpoint, "endpoint URL"),
    h("p", {}, h("strong", {}, "Try it with curl"), connector.signing ? h("span", { class: "hint" }, " (signed connectors also need the signature headers)") : null),
    h("pre", { id: "curl", tabindex: "0" }, curl), copyButton(curl, "curl example"),
    h("div", { class: "actions" }, h("a", { class: "button primary", href: `#/connectors/${encodeURIComponent(connector.id)}` }, "Done")),
  ];
}
