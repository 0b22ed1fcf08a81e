// The cluster overview: the GPU heatmap (nodes x GPUs), the queues' fair share against
// what they hold and are guaranteed, the running jobs and the pending ones with why.

import { get } from "./api.js";
import { ago, fmtNum, fmtTime, h, jobLink, section, table } from "./dom.js";

const LIVE = "starting,running,stopping";

export async function overview() {
  const [nodeList, queueList, pending, live] = await Promise.all([
    get("/nodes"),
    get("/queues"),
    get("/jobs?status=pending&limit=500"),
    get(`/jobs?status=${LIVE}&limit=500`),
  ]);
  const nodes = await Promise.all(
    nodeList.nodes.map((n) => get(`/nodes/${encodeURIComponent(n.name)}`)),
  );
  return [
    heatmap(nodes),
    queues(queueList.queues),
    runningJobs(live.jobs),
    pendingJobs(pending.jobs),
  ];
}

// A GPU's one state, most severe first; "allocated" is also marked apart (data-allocated).
export function gpuState(node, gpu) {
  if (node.state === "lost") return "lost";
  if (!gpu.healthy) return "unhealthy";
  if (node.state === "drained") return "drained";
  return gpu.job_id ? "allocated" : "free";
}

// 0 % is a cool blue, 100 % a hot red; unknown is grey.
export function utilColour(util) {
  if (util === null || util === undefined) return "#d0d4da";
  const hue = 220 - (220 * Math.min(100, Math.max(0, util))) / 100;
  return `hsl(${hue}, 70%, ${55 - util / 10}%)`;
}

function heatmap(nodes) {
  const counts = {};
  const rows = nodes.map((node) => {
    const cells = (node.gpus ?? []).map((gpu) => {
      const state = gpuState(node, gpu);
      counts[state] = (counts[state] ?? 0) + 1;
      const util = gpu.utilization_pct;
      const title =
        `${node.name} GPU ${gpu.index} (${gpu.gpu_type}): ${state}, ` +
        `${fmtNum(util, 0)}% util, ${gpu.memory_used_mib ?? "-"}/${gpu.memory_total_mib} MiB` +
        (gpu.job_id ? `, job ${gpu.job_id}` : "");
      const label = gpu.job_id ? jobLink(gpu.job_id, String(gpu.index)) : String(gpu.index);
      return h(
        "div",
        {
          class: `cell state-${state}${gpu.job_id ? " allocated" : ""}`,
          title,
          "data-node": node.name,
          "data-gpu": gpu.index,
          "data-state": state,
          "data-allocated": gpu.job_id ? "true" : "false",
          "data-util": util ?? "",
          "data-job": gpu.job_id ?? "",
          style: { backgroundColor: utilColour(state === "lost" ? null : util) },
        },
        label,
      );
    });
    return h(
      "div",
      { class: `node-row node-${node.state}`, "data-node": node.name, "data-state": node.state },
      h(
        "div",
        { class: "node-name", title: node.drain_reason ?? "" },
        h("strong", {}, node.name),
        h("span", { class: "muted" }, ` ${node.state} · ${node.gpus_allocated}/${node.gpus_total}`),
      ),
      h("div", { class: "cells" }, cells),
    );
  });
  const legend = ["free", "allocated", "drained", "unhealthy", "lost"].map((s) =>
    h("span", { class: `legend state-${s}`, "data-legend": s }, `${s} ${counts[s] ?? 0}`),
  );
  return section(
    "GPUs",
    h("div", { class: "legend-row" }, legend, h("span", { class: "scale" }, "0% → 100% util")),
    h("div", { id: "heatmap", class: "heatmap" }, rows.length ? rows : h("p", {}, "no nodes yet")),
  );
}

function queues(list) {
  const rows = list.map((q) => {
    const scale = Math.max(q.fair_share_gpus, q.allocated_gpus, q.guaranteed_gpus, 1);
    const bar = h(
      "div",
      { class: "share", title: `held ${q.allocated_gpus}, fair share ${fmtNum(q.fair_share_gpus)}` },
      h("div", { class: "held", style: { width: `${(100 * q.allocated_gpus) / scale}%` } }),
      h("div", { class: "fair", style: { left: `${(100 * q.fair_share_gpus) / scale}%` } }),
      h("div", { class: "guar", style: { left: `${(100 * q.guaranteed_gpus) / scale}%` } }),
    );
    return h(
      "tr",
      { "data-queue": q.name },
      h("td", {}, q.parent ? `${q.parent} / ${q.name}` : q.name),
      h("td", { class: "num" }, fmtNum(q.weight)),
      h("td", { class: "num" }, fmtNum(q.fair_share_gpus)),
      h("td", { class: "num" }, q.allocated_gpus),
      h("td", { class: "num" }, q.guaranteed_gpus),
      h("td", { class: "num" }, q.borrowed_gpus),
      h("td", {}, bar),
      h("td", { class: "num" }, q.running),
      h("td", { class: "num" }, q.pending),
      h("td", { class: "num" }, fmtNum(q.usage_gpu_hours)),
    );
  });
  const headers = [
    "queue", "weight", "fair share", "held", "guaranteed", "borrowed",
    "held | fair share | guarantee", "running", "pending", "usage GPU-h",
  ];
  return section("Queues", table(headers, rows, { id: "queues" }));
}

function runningJobs(jobs) {
  const rows = jobs.map((j) =>
    h(
      "tr",
      { "data-job": j.id },
      h("td", {}, jobLink(j.id)),
      h("td", {}, j.name),
      h("td", {}, j.queue),
      h("td", {}, j.status),
      h("td", {}, j.gpus.map((g) => `${g.node}:${g.index}`).join(" ")),
      h("td", {}, ago(j.started_at)),
    ),
  );
  const body = rows.length
    ? table(["job", "name", "queue", "status", "GPUs", "started"], rows, { id: "running" })
    : h("p", { class: "muted" }, "nothing running");
  return section("Running", body);
}

function pendingJobs(jobs) {
  const ordered = [...jobs].sort(
    (a, b) => a.queue.localeCompare(b.queue) || (a.wait_position ?? 1e9) - (b.wait_position ?? 1e9),
  );
  const rows = ordered.map((j) =>
    h(
      "tr",
      { "data-job": j.id, "data-reason": j.wait_reason ?? "" },
      h("td", {}, jobLink(j.id)),
      h("td", {}, j.name),
      h("td", {}, j.queue),
      h("td", { class: "num" }, j.wait_position ?? "-"),
      h("td", {}, h("code", {}, j.wait_reason ?? "-")),
      h("td", {}, j.wait_message ?? ""),
      h("td", {}, fmtTime(j.wait_estimated_start)),
    ),
  );
  const headers = ["job", "name", "queue", "position", "reason", "why", "expected start"];
  const body = rows.length
    ? table(headers, rows, { id: "pending" })
    : h("p", { class: "muted" }, "no job waits");
  return section("Pending", body);
}
