// One job: its state, its attempts, its GPUs' utilisation over time, its log tail.

import { get } from "./api.js";
import { fmtNum, fmtTime, h, section, table } from "./dom.js";
import { lineChart } from "./chart.js";

const TAIL_BYTES = 16 * 1024;

export async function jobPage(id) {
  const job = await get(`/jobs/${id}`);
  const attempts = job.attempts ?? [];
  const last = attempts[attempts.length - 1];
  const [telemetry, log] = last
    ? await Promise.all([get(`/jobs/${id}/telemetry`), logTail(id, last)])
    : [null, null];
  return [summary(job), attemptTable(attempts), chart(telemetry), logView(log, last)];
}

async function logTail(id, attempt) {
  const offset = Math.max(0, (attempt.log_bytes ?? 0) - TAIL_BYTES);
  const chunk = await get(`/jobs/${id}/logs?attempt=${attempt.number}&offset=${offset}`);
  return chunk.data;
}

function summary(job) {
  const facts = [
    ["status", h("span", { id: "job-status", class: `status-${job.status}` }, job.status)],
    ["queue", job.queue],
    ["priority", job.priority],
    ["submitted", fmtTime(job.submitted_at)],
    ["started", fmtTime(job.started_at)],
    ["ended", fmtTime(job.ended_at)],
    ["GPUs now", job.gpus.map((g) => `${g.node}:${g.index}`).join(" ") || "-"],
    ["command", h("code", {}, (job.spec.command ?? []).join(" "))],
  ];
  if (job.status === "pending") {
    facts.push(["waiting", `${job.wait_reason ?? "-"} (position ${job.wait_position ?? "-"})`]);
    facts.push(["why", job.wait_message ?? ""]);
  }
  if (job.termination_reason) facts.push(["ended as", `${job.termination_reason} (exit ${job.exit_code ?? "-"})`]);
  const list = h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
  return section(`Job ${job.id}: ${job.name}`, list);
}

function attemptTable(attempts) {
  const rows = attempts.map((a) =>
    h(
      "tr",
      { class: "attempt", "data-attempt": a.number, "data-status": a.status },
      h("td", { class: "num" }, a.number),
      h("td", {}, a.status),
      h("td", {}, a.gpus.map((g) => `${g.node}:${g.index}`).join(" ")),
      h("td", {}, fmtTime(a.started_at)),
      h("td", {}, fmtTime(a.ended_at)),
      h("td", {}, a.reason ?? ""),
      h("td", { class: "num" }, a.exit_code ?? ""),
      h("td", { class: "num" }, fmtNum(a.gpu_seconds / 3600, 2)),
      h("td", {}, a.message),
    ),
  );
  const headers = ["#", "status", "GPUs", "started", "ended", "reason", "exit", "GPU-h", "message"];
  const body = rows.length ? table(headers, rows, { id: "attempts" }) : h("p", {}, "no attempt yet");
  return section("Attempts", body);
}

function chart(telemetry) {
  if (!telemetry || !telemetry.gpus.length) {
    return section("GPU utilisation", h("p", { class: "muted" }, "no samples yet"));
  }
  const series = telemetry.gpus.map((g) => ({
    label: `${g.node}:${g.index}`,
    points: g.points.map((p) => ({ t: new Date(p.at).getTime(), v: p.utilization_pct })),
  }));
  const t0 = new Date(telemetry.start).getTime();
  const t1 = new Date(telemetry.end).getTime();
  const resolution = telemetry.resolution_s ? `${telemetry.resolution_s / 60} min averages` : "raw samples";
  return section(
    `GPU utilisation (attempt ${telemetry.attempt}, ${resolution})`,
    h("div", { id: "chart" }, lineChart(series, t0, t1)),
  );
}

function logView(text, attempt) {
  const title = attempt ? `Log (attempt ${attempt.number}, last ${TAIL_BYTES / 1024} KiB)` : "Log";
  return section(title, h("pre", { id: "log", class: "log" }, text ?? ""));
}
