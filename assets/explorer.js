// DataPool Explorer: a live tree of streams → items → fields over Server-Sent Events,
// an items table with paging and search by id, the item panel and the field panel with
// its snapshot history.

import { api, seg } from "./api.js";
import { errorBox, field, h, show, table, typeOf, when } from "./dom.js";

const PAGE = 25;
const TREE_ITEMS = 50;
const HIGHLIGHT_MS = 2500;
/** Points the field panel shows at most: the newest. */
const HISTORY_POINTS = 200;
/** History points asked for at once (the server's largest page). */
const HISTORY_PAGE = 1000;
/** Pages of history read at most for one field panel. */
const HISTORY_PAGES = 5;
const SVG = "http://www.w3.org/2000/svg";
/** The longest retention the server accepts, in days. */
const MAX_RETENTION_DAYS = 3650;

/** Renders the Explorer into `view`, opened at `stream` and `item` when given. */
export function render(view, stream, item) {
  const ex = {
    stream: null, item: null, field: null, page: null, cursors: [null], pageIndex: 0,
    sources: new Map(), stored: new Set(), items: new Map(), tree: h("ul", { class: "tree", "aria-label": "Streams" }),
    main: h("div", { class: "explorer-main" }), timers: new Set(),
  };
  view.append(
    h("div", { class: "page-header" }, h("h1", { tabindex: "-1" }, "Explorer"),
      h("p", { class: "muted", id: "live", role: "status" }, "Choose a stream to follow it live.")),
    h("div", { class: "explorer" }, h("nav", { class: "explorer-tree", "aria-label": "Streams, items and fields" }, ex.tree), ex.main));
  loadStreams(ex, stream, item);
  const refresh = setInterval(() => loadStreams(ex), 10000);
  return () => {
    clearInterval(refresh);
    for (const source of ex.sources.values()) source.close();
    for (const timer of ex.timers) clearTimeout(timer);
  };
}

async function loadStreams(ex, open, item) {
  let names;
  try {
    const [{ streams }, { connectors }] = await Promise.all([api("GET", "/api/streams"), api("GET", "/api/admin/connectors")]);
    const counts = new Map(streams.map((s) => [s.name, s.itemCount]));
    for (const s of streams) ex.stored.add(s.name);
    for (const c of connectors) if (!counts.has(c.stream)) counts.set(c.stream, 0);
    names = [...counts.entries()].sort(([a], [b]) => a.localeCompare(b));
  } catch (error) {
    ex.tree.replaceChildren(h("li", {}, errorBox(error)));
    return;
  }
  if (names.length === 0) {
    ex.tree.replaceChildren(h("li", { class: "empty" }, "No streams yet."));
    ex.main.replaceChildren(h("div", { class: "empty" }, h("p", {}, "The DataPool is empty."), h("p", { class: "muted" }, "Create a connector in Data Sources and push data to it.")));
    return;
  }
  for (const [name, count] of names) {
    let node = ex.tree.querySelector(`li[data-stream="${CSS.escape(name)}"]`);
    if (!node) {
      node = streamNode(ex, name);
      ex.tree.append(node);
    }
    node.querySelector(".count").textContent = String(count);
  }
  ex.tree.querySelector(".empty")?.remove();
  if (open) await selectStream(ex, open, item);
  else if (!ex.stream) ex.main.replaceChildren(h("p", { class: "empty" }, "Choose a stream to see its items."));
}

function streamNode(ex, name) {
  const toggle = h("button", { type: "button", class: "tree-toggle", "aria-expanded": "false", "aria-label": `Show items of ${name}` }, "▸");
  const open = h("button", { type: "button", class: "tree-label" }, name, " ", h("span", { class: "count badge" }, "0"));
  const children = h("ul", { hidden: true });
  const node = h("li", { "data-stream": name }, toggle, open, children);
  toggle.addEventListener("click", () => expand(ex, node, toggle.getAttribute("aria-expanded") !== "true"));
  open.addEventListener("click", () => selectStream(ex, name));
  return node;
}

async function expand(ex, node, yes) {
  const toggle = node.querySelector(".tree-toggle");
  const children = node.querySelector("ul");
  toggle.setAttribute("aria-expanded", String(yes));
  toggle.textContent = yes ? "▾" : "▸";
  children.hidden = !yes;
  if (!yes) return;
  const stream = node.dataset.stream;
  follow(ex, stream);
  try {
    const items = await itemsPage(ex, stream, null, TREE_ITEMS);
    children.replaceChildren(...(items.items.length === 0 ? [h("li", { class: "muted" }, "No items yet")] : items.items.map((item) => itemNode(ex, stream, item))));
  } catch (error) {
    children.replaceChildren(h("li", {}, errorBox(error)));
  }
}

function itemNode(ex, stream, item) {
  const fields = h("ul", { hidden: true });
  const toggle = h("button", { type: "button", class: "tree-toggle", "aria-expanded": "false", "aria-label": `Show fields of ${item.id}` }, "▸");
  const label = h("button", { type: "button", class: "tree-label", onclick: () => { selectStream(ex, stream, item.id); } }, item.id);
  const node = h("li", { "data-item": item.id }, toggle, label, fields);
  node.fill = (fresh) => fields.replaceChildren(...Object.entries(fresh.fields).map(([name, value]) =>
    h("li", { "data-field": name }, h("button", { type: "button", class: "tree-label", onclick: () => { selectStream(ex, stream, fresh.id, name); } },
      h("span", { class: "field-name" }, name), " ", h("span", { class: "field-value" }, show(value))))));
  node.fill(item);
  toggle.addEventListener("click", () => {
    const yes = toggle.getAttribute("aria-expanded") !== "true";
    toggle.setAttribute("aria-expanded", String(yes));
    toggle.textContent = yes ? "▾" : "▸";
    fields.hidden = !yes;
  });
  return node;
}

/** A page of a stream's items; none without asking for a stream that has had none. */
async function itemsPage(ex, stream, cursor, limit) {
  if (!ex.stored.has(stream)) return { items: [], nextCursor: null };
  try {
    return await api("GET", `/api/streams/${seg(stream)}/items?limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
  } catch (error) {
    if (error.status === 404) return { items: [], nextCursor: null };
    throw error;
  }
}

/** Follows a stream's changes over SSE (the session cookie authenticates it). */
function follow(ex, stream) {
  if (ex.sources.has(stream)) return;
  const source = new EventSource(`/api/streams/${seg(stream)}/events`);
  const onChange = (event) => {
    let change;
    try {
      change = JSON.parse(event.data);
    } catch {
      return;
    }
    applyChange(ex, event.type, change);
  };
  for (const type of ["item.created", "item.updated", "item.deleted"]) source.addEventListener(type, onChange);
  source.addEventListener("reset", () => { if (ex.stream === stream) showPage(ex); });
  const live = document.getElementById("live");
  source.addEventListener("open", () => {
    live.textContent = `Live: following ${stream}; changes appear as they happen.`;
    // Changes between the first page load and this connection are on the server only.
    if (ex.stream === stream) showPage(ex);
  });
  source.addEventListener("error", () => { live.textContent = "The live connection was lost; reconnecting…"; });
  ex.sources.set(stream, source);
}

function flash(ex, el) {
  if (!el) return;
  el.classList.remove("changed");
  void el.offsetWidth;
  el.classList.add("changed");
  const timer = setTimeout(() => { el.classList.remove("changed"); ex.timers.delete(timer); }, HIGHLIGHT_MS);
  ex.timers.add(timer);
}

function applyChange(ex, type, change) {
  const { stream, itemId } = change;
  ex.stored.add(stream);
  const streamNodeEl = ex.tree.querySelector(`li[data-stream="${CSS.escape(stream)}"]`);
  const treeItem = streamNodeEl?.querySelector(`li[data-item="${CSS.escape(itemId)}"]`);
  const previous = ex.items.get(itemId);
  if (type === "item.deleted") {
    treeItem?.remove();
    if (ex.stream === stream) showPage(ex);
    return;
  }
  const fresh = { id: itemId, fields: change.fields || {}, version: change.version, updatedAt: new Date().toISOString() };
  if (treeItem) {
    treeItem.fill(fresh);
    flash(ex, treeItem.querySelector(":scope > .tree-label"));
  } else if (streamNodeEl && streamNodeEl.querySelector(".tree-toggle").getAttribute("aria-expanded") === "true") {
    const list = streamNodeEl.querySelector("ul");
    list.querySelector(".muted")?.remove();
    const node = itemNode(ex, stream, fresh);
    list.append(node);
    flash(ex, node.querySelector(".tree-label"));
  }
  if (streamNodeEl && type === "item.created") {
    const count = streamNodeEl.querySelector(".count");
    count.textContent = String(Number(count.textContent) + 1);
  }
  if (ex.stream !== stream) return;
  if (ex.main.querySelector("#snapshots[data-unstored]")) loadSnapshots(ex, stream);
  const row = ex.main.querySelector(`tr[data-item="${CSS.escape(itemId)}"]`);
  if (row && previous) {
    previous.fields = fresh.fields;
    previous.version = fresh.version;
    fillRow(ex, row, previous, true);
  } else if (!row) {
    showPage(ex, itemId);
  }
  if (ex.item === itemId) showItem(ex, itemId, previous ? previous.fields : null);
}

async function selectStream(ex, stream, item, fieldName) {
  const changed = ex.stream !== stream;
  ex.stream = stream;
  ex.item = item || null;
  ex.field = fieldName || null;
  history.replaceState(null, "", `#/explorer/${encodeURIComponent(stream)}${item ? `/${encodeURIComponent(item)}` : ""}`);
  for (const li of ex.tree.querySelectorAll(":scope > li")) li.classList.toggle("selected", li.dataset.stream === stream);
  follow(ex, stream);
  if (changed || !ex.main.querySelector("#items")) {
    ex.cursors = [null];
    ex.pageIndex = 0;
    const search = h("input", { type: "search", spellcheck: "false" });
    const searchForm = h("form", { class: "search", role: "search" }, field("Find item by id", search),
      h("button", { type: "submit", class: "secondary" }, "Find item"));
    searchForm.addEventListener("submit", (event) => { event.preventDefault(); if (search.value.trim()) selectStream(ex, stream, search.value.trim()); });
    ex.main.replaceChildren(
      snapshotsForm(ex, stream),
      h("section", { "aria-labelledby": "items-title" }, h("h2", { id: "items-title" }, `Items of ${stream}`), searchForm,
        h("div", { id: "items", "aria-live": "polite" }),
        h("div", { class: "pager" },
          h("button", { type: "button", class: "secondary", id: "prev-page", onclick: () => { ex.pageIndex -= 1; showPage(ex); } }, "Previous page"),
          h("span", { id: "page-number" }),
          h("button", { type: "button", class: "secondary", id: "next-page", onclick: () => { ex.pageIndex += 1; showPage(ex); } }, "Next page"))),
      h("div", { class: "panels" },
        h("section", { id: "item-panel", "aria-live": "polite" }),
        h("section", { id: "field-panel", "aria-live": "polite" })));
    await showPage(ex);
  }
  if (item) await showItem(ex, item);
  else ex.main.querySelector("#item-panel").replaceChildren();
}

/** The stream's Snapshots switch and retention, read and saved through the admin API. */
function snapshotsForm(ex, stream) {
  const enabled = h("input", { type: "checkbox", id: "snapshots-enabled", disabled: true });
  const days = h("input", { type: "number", min: "1", max: String(MAX_RETENTION_DAYS), step: "1", required: true, disabled: true });
  const save = h("button", { type: "submit", class: "secondary", disabled: true }, "Save snapshots");
  const status = h("div", { id: "snapshots-status" });
  const form = h("form", { id: "snapshots", noValidate: true },
    h("fieldset", {}, h("legend", {}, `Snapshots of ${stream}`),
      h("div", { class: "filters" },
        h("div", { class: "field inline" }, enabled, h("label", { for: enabled.id }, "Record field history")),
        field("Keep history (days)", days),
        save),
      status));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const retentionDays = Number(days.value);
    if (!Number.isInteger(retentionDays) || retentionDays < 1 || retentionDays > MAX_RETENTION_DAYS) {
      status.replaceChildren(errorBox(new Error(`Keep history for a whole number of days from 1 to ${MAX_RETENTION_DAYS}.`)));
      return;
    }
    save.disabled = true;
    status.replaceChildren(h("p", { class: "muted", role: "status" }, "Saving…"));
    try {
      const answer = await api("PATCH", `/api/admin/streams/${seg(stream)}`, { snapshots: { enabled: enabled.checked, retentionDays } });
      showSnapshots(form, answer.stream.snapshots);
      status.replaceChildren(h("p", { class: "saved", role: "status" }, `Saved. ${snapshotsText(answer.stream.snapshots)}`));
      if (ex.stream === stream && ex.item) showItem(ex, ex.item);
    } catch (error) {
      status.replaceChildren(errorBox(error));
    } finally {
      save.disabled = false;
    }
  });
  loadSnapshots(ex, stream, form);
  return form;
}

/** Fills the Snapshots form with what the server holds for `stream`. */
async function loadSnapshots(ex, stream, form = ex.main.querySelector("#snapshots")) {
  const status = form.querySelector("#snapshots-status");
  const unstored = () => {
    form.dataset.unstored = "";
    status.replaceChildren(h("p", { class: "muted" }, "Snapshots can be switched on once the stream holds its first item."));
  };
  if (!ex.stored.has(stream)) {
    unstored();
    return;
  }
  try {
    const answer = await api("GET", `/api/admin/streams/${seg(stream)}`);
    delete form.dataset.unstored;
    showSnapshots(form, answer.stream.snapshots);
    for (const control of form.querySelectorAll("input, button")) control.disabled = false;
    status.replaceChildren(h("p", { class: "muted" }, snapshotsText(answer.stream.snapshots)));
  } catch (error) {
    if (error.status === 404) unstored();
    else status.replaceChildren(errorBox(error));
  }
}

function showSnapshots(form, snapshots) {
  form.querySelector("#snapshots-enabled").checked = snapshots.enabled;
  form.querySelector("input[type='number']").value = String(snapshots.retentionDays);
}

function snapshotsText(snapshots) {
  return snapshots.enabled
    ? `Snapshots are on: field history is kept ${snapshots.retentionDays} days.`
    : "Snapshots are off: no field history is recorded.";
}

async function showPage(ex, highlight) {
  const box = ex.main.querySelector("#items");
  if (!box) return;
  const stream = ex.stream;
  let page;
  try {
    page = await itemsPage(ex, stream, ex.cursors[ex.pageIndex], PAGE);
  } catch (error) {
    box.replaceChildren(errorBox(error));
    return;
  }
  if (stream !== ex.stream) return;
  ex.cursors[ex.pageIndex + 1] = page.nextCursor;
  ex.items = new Map(page.items.map((item) => [item.id, item]));
  ex.main.querySelector("#prev-page").disabled = ex.pageIndex === 0;
  ex.main.querySelector("#next-page").disabled = !page.nextCursor;
  ex.main.querySelector("#page-number").textContent = `Page ${ex.pageIndex + 1}`;
  if (page.items.length === 0) {
    box.replaceChildren(h("p", { class: "empty" }, "No items in this stream yet. They appear here as soon as they arrive."));
    return;
  }
  const names = [...new Set(page.items.flatMap((item) => Object.keys(item.fields)))].slice(0, 8);
  const result = table(`Items of ${stream}`, ["Item id", ...names, "Updated"], []);
  result.id = "items-table";
  result.names = names;
  for (const item of page.items) {
    const row = h("tr", { "data-item": item.id });
    fillRow(ex, row, item, false, names);
    result.tBodies[0].append(row);
    if (item.id === highlight) flash(ex, row);
  }
  box.replaceChildren(h("div", { class: "scroll" }, result));
}

function fillRow(ex, row, item, mark, names = row.closest("table").names) {
  const old = [...row.cells].map((cell) => cell.textContent);
  const cells = [
    h("button", { type: "button", class: "link", onclick: () => selectStream(ex, ex.stream, item.id) }, item.id),
    ...names.map((name) => show(item.fields[name])),
    when(item.updatedAt),
  ];
  const heads = ["Item id", ...names, "Updated"];
  row.replaceChildren(...cells.map((cell, i) => h("td", { "data-label": heads[i] }, cell)));
  if (mark) [...row.cells].forEach((cell, i) => { if (i > 0 && cell.textContent !== old[i]) flash(ex, cell); });
}

async function showItem(ex, id, before) {
  const panel = ex.main.querySelector("#item-panel");
  let item;
  try {
    item = await api("GET", `/api/streams/${seg(ex.stream)}/items/${seg(id)}`);
  } catch (error) {
    panel.replaceChildren(h("h2", {}, `Item ${id}`), error.status === 404 ? h("p", { class: "empty" }, `No item with id ${id} in ${ex.stream}.`) : errorBox(error));
    return;
  }
  if (ex.item !== id) return;
  const changedAt = item.fieldsChangedAt || null;
  const heads = ["Field", "Type", "Value"].concat(changedAt ? ["Last changed"] : []);
  const rows = Object.entries(item.fields).map(([name, value]) => [
    h("button", { type: "button", class: "link", onclick: () => { ex.field = name; showField(ex, item, name); } }, name),
    typeOf(value), h("code", {}, show(value)),
  ].concat(changedAt ? [when(changedAt[name])] : []));
  const fieldsTable = table(`Fields of ${id}`, heads, rows);
  Object.keys(item.fields).forEach((name, i) => {
    const tr = fieldsTable.tBodies[0].rows[i];
    tr.dataset.field = name;
    if (before && show(before[name]) !== show(item.fields[name])) flash(ex, tr);
  });
  panel.replaceChildren(
    h("h2", {}, `Item ${id}`),
    h("p", { class: "muted" }, `Version ${item.version} · updated ${when(item.updatedAt)} · by ${item.connectorId || "—"}`),
    h("div", { class: "scroll" }, fieldsTable));
  if (ex.field && ex.field in item.fields) showField(ex, item, ex.field);
  else ex.main.querySelector("#field-panel").replaceChildren();
}

async function showField(ex, item, name) {
  const panel = ex.main.querySelector("#field-panel");
  const value = item.fields[name];
  const changed = item.fieldsChangedAt && item.fieldsChangedAt[name];
  const history = h("div", {}, h("p", { class: "muted" }, "Loading history…"));
  panel.replaceChildren(
    h("h2", {}, `Field ${name}`),
    h("dl", { class: "summary" },
      h("dt", {}, "Type"), h("dd", {}, typeOf(value)),
      h("dt", {}, "Current value"), h("dd", {}, h("code", {}, show(value))),
      changed ? [h("dt", {}, "Last changed"), h("dd", {}, when(changed))] : null),
    h("h3", {}, "History"), history);
  history.replaceChildren(await historyOf(ex.stream, item.id, name));
}

/** The field's snapshot history as a sparkline and a timeline, or why there is none. */
async function historyOf(stream, id, name) {
  let enabled = null;
  try {
    const answer = await api("GET", `/api/admin/streams/${seg(stream)}`);
    const snapshots = answer && (answer.snapshots || (answer.stream && answer.stream.snapshots));
    enabled = snapshots ? snapshots.enabled === true : null;
  } catch {
    enabled = null;
  }
  const off = h("p", { class: "empty", id: "snapshots-off" }, "Snapshots are off for this stream.");
  if (enabled === false) return off;
  let points = [];
  try {
    // Oldest first, a page at a time: keep the newest points of at most a few pages.
    const base = `/api/streams/${seg(stream)}/items/${seg(id)}/history?field=${encodeURIComponent(name)}&limit=${HISTORY_PAGE}`;
    let cursor = null;
    for (let page = 0; page < HISTORY_PAGES; page += 1) {
      const answer = await api("GET", cursor ? `${base}&cursor=${encodeURIComponent(cursor)}` : base);
      points = points.concat(answer.points || []).slice(-HISTORY_POINTS);
      cursor = answer.nextCursor;
      if (!cursor) break;
    }
  } catch (error) {
    return error.status === 404 ? off : errorBox(error);
  }
  if (points.length === 0) return enabled ? h("p", { class: "empty" }, "No history recorded for this field yet.") : off;
  return h("div", {}, sparkline(points),
    h("ol", { class: "timeline", "aria-label": `History of ${name}` },
      points.slice().reverse().map((p) => h("li", {}, h("time", { datetime: p.at }, when(p.at)), " ", h("code", {}, show(p.value))))));
}

function sparkline(points) {
  const numbers = points.filter((p) => typeof p.value === "number");
  if (numbers.length < 2) return h("p", { class: "muted" }, "No sparkline: the field has fewer than two numeric values.");
  const width = 320;
  const height = 60;
  const times = numbers.map((p) => Date.parse(p.at));
  const values = numbers.map((p) => p.value);
  const [t0, t1] = [Math.min(...times), Math.max(...times)];
  const [v0, v1] = [Math.min(...values), Math.max(...values)];
  const x = (t) => (t1 === t0 ? width / 2 : ((t - t0) / (t1 - t0)) * (width - 4) + 2);
  const y = (v) => (v1 === v0 ? height / 2 : height - 2 - ((v - v0) / (v1 - v0)) * (height - 4));
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("class", "sparkline");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `Sparkline from ${v0} to ${v1}, latest ${values[values.length - 1]}`);
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", numbers.map((p, i) => `${x(times[i]).toFixed(1)},${y(p.value).toFixed(1)}`).join(" "));
  svg.append(line);
  return svg;
}
