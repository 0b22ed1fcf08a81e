// A small hand-written SVG line chart: utilisation (0-100 %) of each GPU over time.

const NS = "http://www.w3.org/2000/svg";
const W = 720;
const H = 200;
const PAD = { left: 40, right: 12, top: 10, bottom: 24 };
const COLOURS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];

function svg(tag, attrs = {}, text = null) {
  const el = document.createElementNS(NS, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  if (text !== null) el.textContent = text;
  return el;
}

// series: [{label, points: [{t: ms, v: number|null}]}], over [t0, t1] in ms
export function lineChart(series, t0, t1) {
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img" });
  const span = Math.max(1, t1 - t0);
  const x = (t) => PAD.left + ((t - t0) / span) * (W - PAD.left - PAD.right);
  const y = (v) => PAD.top + (1 - v / 100) * (H - PAD.top - PAD.bottom);
  for (const v of [0, 50, 100]) {
    root.append(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v), class: "grid" }));
    root.append(svg("text", { x: PAD.left - 6, y: y(v) + 4, "text-anchor": "end" }, `${v}%`));
  }
  for (const [i, t] of [t0, t0 + span / 2, t1].entries()) {
    const anchor = ["start", "middle", "end"][i];
    const label = new Date(t).toLocaleTimeString();
    root.append(svg("text", { x: x(t), y: H - 6, "text-anchor": anchor }, label));
  }
  series.forEach((s, i) => {
    const known = s.points.filter((p) => p.v !== null && p.v !== undefined);
    const colour = COLOURS[i % COLOURS.length];
    const line = svg("polyline", {
      points: known.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(" "),
      fill: "none",
      stroke: colour,
      "stroke-width": 2,
      "data-series": s.label,
      "data-points": known.length,
    });
    line.append(svg("title", {}, s.label));
    root.append(line);
    root.append(svg("text", { x: PAD.left + 8 + i * 110, y: PAD.top + 12, fill: colour }, s.label));
  });
  return root;
}
