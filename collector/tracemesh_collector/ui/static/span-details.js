// The details of one span: ids, kind, timing, endpoints, annotations and tags, all as text.

import { h } from "./dom.js";
import { formatDuration, formatTime } from "./format.js";
import { serviceOf } from "./model.js";

export function spanDetails(span, parent, traceStartUs) {
  const relative = (us) => (us === undefined ? "" : `+${formatDuration(us - traceStartUs)}`);
  return [
    h("h3", {}, serviceOf(span), ": ", span.name ?? ""),
    table("span-facts", [
      ["Span ID", span.id], ["Parent ID", span.parentId ?? "none (root)"], ["Trace ID", span.traceId],
      ["Kind", span.kind ?? "none"], ["Shared", span.shared ? "true" : "false"],
      ["Start", `${formatTime(span.timestamp)} (${relative(span.timestamp)})`],
      ["Duration", formatDuration(span.duration)],
      ["Parent span", parent ? `${serviceOf(parent)}: ${parent.name ?? ""}` : "none"],
      ["Local endpoint", endpoint(span.localEndpoint)], ["Remote endpoint", endpoint(span.remoteEndpoint)],
    ]),
    h("h4", {}, "Annotations"),
    (span.annotations ?? []).length
      ? table("annotations", span.annotations.map((a) => [relative(a.timestamp), a.value]))
      : h("p", { class: "muted" }, "none"),
    h("h4", {}, "Tags"),
    Object.keys(span.tags ?? {}).length
      ? table("tags", Object.entries(span.tags).sort(([a], [b]) => a.localeCompare(b)))
      : h("p", { class: "muted" }, "none"),
  ];
}

function endpoint(value) {
  if (!value) return "none";
  const address = value.ipv4 ?? (value.ipv6 ? `[${value.ipv6}]` : "");
  const port = value.port ? `:${value.port}` : "";
  return [value.serviceName, `${address}${port}`].filter(Boolean).join(" ") || "none";
}

function table(id, pairs) {
  return h("table", { class: id },
    h("tbody", {}, pairs.map(([key, value]) => h("tr", {}, h("th", {}, String(key)), h("td", {}, String(value))))));
}
