// Small DOM helpers: elements are built with h(), never from HTML strings, so data from
// the API is always text.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key.startsWith("data-")) el.setAttribute(key, String(value));
    else if (key === "style") Object.assign(el.style, value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function section(title, ...children) {
  return h("section", {}, h("h2", {}, title), ...children);
}

export function table(headers, rows, attrs = {}) {
  return h(
    "table",
    attrs,
    h("thead", {}, h("tr", {}, headers.map((name) => h("th", {}, name)))),
    h("tbody", {}, rows),
  );
}

export function fmtTime(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleString();
}

export function fmtNum(value, digits = 1) {
  return value === null || value === undefined ? "-" : Number(value).toFixed(digits);
}

export function ago(iso) {
  if (!iso) return "";
  const s = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 1000));
  if (s < 120) return `${s}s ago`;
  if (s < 7200) return `${Math.round(s / 60)}m ago`;
  return `${Math.round(s / 3600)}h ago`;
}

export function jobLink(id, text = `#${id}`) {
  return h("a", { href: `#/jobs/${id}`, class: "job-link", "data-job": id }, text);
}
