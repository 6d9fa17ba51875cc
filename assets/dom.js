// Small helpers every page uses: building elements, labelled fields, dialogs, times.

/** An element: h("button", {class: "primary", onclick: f}, "Save"). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name in el && typeof value !== "string") el[name] = value;
    else el.setAttribute(name, value === true ? "" : value);
  }
  el.append(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

let fieldCount = 0;

/** A labelled form field: the label names the control, a hint describes it. */
export function field(label, control, hint) {
  const id = control.id || `f${++fieldCount}`;
  control.id = id;
  const parts = [h("label", { for: id }, label), control];
  if (hint) {
    const hintId = `${id}-hint`;
    control.setAttribute("aria-describedby", hintId);
    parts.push(h("p", { class: "hint", id: hintId }, hint));
  }
  return h("div", { class: "field" }, parts);
}

/** A status dot with its word beside it, so colour is never the only signal. */
export function statusDot(status, label) {
  return h("span", { class: `status status-${status}` }, h("span", { class: "dot", "aria-hidden": "true" }), label);
}

const STATUS_LABELS = { green: "Active", yellow: "Idle", red: "Error", grey: "Disabled" };

/** The label of a monitoring colour. */
export function statusLabel(status) {
  return STATUS_LABELS[status] || status;
}

/** A time as the operator reads it, or a dash. */
export function when(text) {
  if (!text) return "—";
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? text : date.toLocaleString();
}

/** A message box for an error (the server's message, never its raw body). */
export function errorBox(error) {
  return h("p", { class: "error", role: "alert" }, error.message || String(error));
}

/** A short confirmation in the page's one dialog; resolves to true when confirmed. */
export function confirmDialog(question, action) {
  const dialog = document.getElementById("confirm");
  dialog.querySelector("#confirm-text").textContent = question;
  const ok = dialog.querySelector("#confirm-ok");
  ok.textContent = action;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

/** A button that copies `text` and says so. */
export function copyButton(text, what) {
  const button = h("button", { type: "button", class: "secondary" }, `Copy ${what}`);
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = "Copied";
    } catch {
      button.textContent = "Select and copy by hand";
    }
    setTimeout(() => { button.textContent = `Copy ${what}`; }, 2000);
  });
  return button;
}

/** A value shown in a cell: strings as they are, the rest as JSON. */
export function show(value) {
  if (value === undefined) return "";
  return typeof value === "string" ? value : JSON.stringify(value);
}

/** The JSON type of a value, as the field panel names it. */
export function typeOf(value) {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  return typeof value;
}

/** A page heading with optional buttons beside it. */
export function pageHeader(title, ...actions) {
  return h("div", { class: "page-header" }, h("h1", { tabindex: "-1" }, title), h("div", { class: "actions" }, actions));
}

/** A table with a caption, head and rows (arrays of cells). */
export function table(caption, heads, rows) {
  return h("table", {},
    h("caption", { class: "visually-hidden" }, caption),
    h("thead", {}, h("tr", {}, heads.map((head) => h("th", { scope: "col" }, head)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((cell, i) => h("td", { "data-label": heads[i] }, cell))))));
}
