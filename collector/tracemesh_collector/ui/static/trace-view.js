// One trace: a header, a service filter, the timeline (a bar per span, nested by depth, offsets and
// widths proportional to time, the critical path drawn dark over the bars) and the clicked span's details.

import * as api from "./api.js";
import { h, replace } from "./dom.js";
import { formatDuration, formatTime } from "./format.js";
import { criticalPath, isError, serviceOf, spanTree, traceSummary } from "./model.js";
import { spanDetails } from "./span-details.js";

const TICKS = 5;

export async function renderTrace(root, traceId, showError) {
  replace(root, h("p", { class: "muted" }, "loading…"));
  let spans;
  try {
    spans = await api.getTrace(traceId);
  } catch (error) {
    replace(root);
    showError(error);
    return;
  }
  const summary = traceSummary(spans);
  const rows = spanTree(spans);
  const critical = criticalPath(rows);
  const startUs = summary.startUs ?? 0;
  const totalUs = Math.max(summary.durationUs ?? 0, 1);
  const position = (us) => `${((us - startUs) / totalUs) * 100}%`;
  const width = (us) => `${(us / totalUs) * 100}%`;

  const details = h("aside", { id: "span-details", class: "details" },
    h("p", { class: "muted" }, "Click a span for its tags, annotations, ids and endpoints."));
  const rowElements = rows.map((node) => {
    const { span } = node;
    const onCritical = critical.has(node);
    const bar = h("div", { class: isError(span) ? "span-bar error" : "span-bar",
      style: { left: position(span.timestamp ?? startUs), width: width(span.duration ?? 0) } });
    const overlays = (critical.get(node) ?? []).map(([from, to]) => h("div", { class: "critical",
      style: { left: position(from), width: width(to - from) } }));
    const row = h("div", {
      class: `span-row${onCritical ? " on-critical-path" : ""}`, tabindex: 0, role: "row",
      "data-span-id": span.id, "data-service": serviceOf(span), "data-depth": node.depth },
    h("div", { class: "span-label", title: `${serviceOf(span)} ${span.name ?? ""}`,
      style: { paddingLeft: `${node.depth * 14 + 4}px` } },
      h("span", { class: "span-service" }, serviceOf(span)), " ",
      h("span", { class: "span-name" }, span.name ?? ""),
      span.kind ? h("span", { class: "kind" }, span.kind) : null,
      span.shared ? h("span", { class: "kind" }, "shared") : null),
    h("div", { class: "span-track" }, bar, overlays,
      h("span", { class: "span-duration", style: { left: position((span.timestamp ?? startUs) + (span.duration ?? 0)) } },
        formatDuration(span.duration))));
    const select = () => {
      for (const other of root.querySelectorAll(".span-row.selected")) other.classList.remove("selected");
      row.classList.add("selected");
      replace(details, spanDetails(span, node.parent?.span, startUs));
    };
    row.addEventListener("click", select);
    row.addEventListener("keydown", (event) => event.key === "Enter" && select());
    return row;
  });

  const filter = h("select", { id: "service-filter" }, h("option", { value: "" }, "all services"),
    summary.serviceCounts.map(([name, count]) => h("option", { value: name }, `${name} (${count})`)));
  const shown = h("span", { class: "muted", id: "shown-count" }, `${rows.length} of ${rows.length} spans`);
  filter.addEventListener("change", () => {
    let count = 0;
    for (const row of rowElements) {
      row.hidden = Boolean(filter.value) && row.dataset.service !== filter.value;
      count += row.hidden ? 0 : 1;
    }
    shown.textContent = `${count} of ${rows.length} spans`;
  });

  const ticks = Array.from({ length: TICKS }, (_, index) => h("span", { class: "tick",
    style: { left: `${(index / (TICKS - 1)) * 100}%` } }, formatDuration((totalUs * index) / (TICKS - 1))));
  replace(root,
    h("header", { class: "trace-header" },
      h("h2", {}, h("b", {}, summary.rootService), ": ", summary.rootName),
      h("dl", { class: "facts" },
        fact("Trace ID", summary.traceId), fact("Started", formatTime(summary.startUs)),
        fact("Duration", formatDuration(summary.durationUs)), fact("Services", summary.serviceCounts.length),
        fact("Spans", summary.spanCount), fact("Errors", summary.errorCount)),
      h("label", { class: "filter" }, "Service filter ", filter, " ", shown),
      h("p", { class: "legend" }, h("span", { class: "critical-swatch" }), " critical path")),
    h("div", { class: "trace-body" },
      h("div", { class: "timeline", id: "timeline", role: "table" },
        h("div", { class: "span-row ruler" }, h("div", { class: "span-label" }, "Service: span"),
          h("div", { class: "span-track" }, ticks)),
        rowElements),
      details));
}

function fact(label, value) {
  return [h("dt", {}, label), h("dd", {}, String(value ?? ""))];
}
