// The search page: the form (service, span name, tags, durations, lookback, limit) and the result list.
// The query lives in the location hash (#/?serviceName=...), so a search can be bookmarked and reloaded.

import * as api from "./api.js";
import { append, h, replace } from "./dom.js";
import { formatDuration, formatTime, LOOKBACKS, parseDuration } from "./format.js";
import { traceSummary } from "./model.js";

const DEFAULT_LOOKBACK_MS = 3_600_000;

export async function renderSearch(root, params, showError) {
  const form = h("form", { id: "search", class: "search" });
  const service = h("select", { name: "serviceName", id: "serviceName" }, h("option", { value: "" }, "any service"));
  const spanName = h("select", { name: "spanName", id: "spanName" }, h("option", { value: "" }, "all"));
  const annotationQuery = h("input", { name: "annotationQuery", id: "annotationQuery", size: 32,
    placeholder: "http.status_code=500 and error", value: params.get("annotationQuery") ?? "" });
  const minDuration = h("input", { name: "minDuration", id: "minDuration", size: 8, placeholder: "e.g. 10ms",
    value: durationField(params.get("minDuration")) });
  const maxDuration = h("input", { name: "maxDuration", id: "maxDuration", size: 8, placeholder: "e.g. 2s",
    value: durationField(params.get("maxDuration")) });
  const lookback = h("select", { name: "lookback", id: "lookback" },
    LOOKBACKS.map(([label, ms]) => h("option", { value: ms }, `last ${label}`)));
  lookback.value = params.get("lookback") ?? String(DEFAULT_LOOKBACK_MS);
  const limit = h("input", { name: "limit", id: "limit", type: "number", min: 1, value: params.get("limit") ?? 10 });
  append(form,
    field("Service", service), field("Span name", spanName), field("Tags", annotationQuery),
    field("Min duration", minDuration), field("Max duration", maxDuration), field("Time range", lookback),
    field("Limit", limit), h("button", { type: "submit", id: "run-query" }, "Run query"));
  const results = h("div", { id: "results" });
  replace(root, form, results);

  service.addEventListener("change", () => loadSpanNames(spanName, service.value, "", showError));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    try {
      const query = new URLSearchParams();
      const set = (name, value) => value !== undefined && value !== "" && query.set(name, String(value));
      set("serviceName", service.value);
      set("spanName", spanName.value);
      set("annotationQuery", annotationQuery.value.trim());
      const min = parseDuration(minDuration.value);
      const max = parseDuration(maxDuration.value);
      set("minDuration", min ?? (max !== undefined ? 1 : undefined)); // Zipkin takes maxDuration only with a min
      set("maxDuration", max);
      set("lookback", lookback.value);
      set("limit", limit.value);
      const next = `#/?${query}`;
      if (location.hash === next) window.dispatchEvent(new HashChangeEvent("hashchange")); // run it again
      else location.hash = next;
    } catch (error) {
      showError(error);
    }
  });

  try {
    const names = await api.services();
    append(service, names.map((name) => h("option", { value: name }, name)));
    service.value = params.get("serviceName") ?? "";
    if (service.value) await loadSpanNames(spanName, service.value, params.get("spanName") ?? "", showError);
  } catch (error) {
    showError(error);
  }
  if ([...params.keys()].length) await runSearch(results, params, showError);
}

async function loadSpanNames(select, serviceName, selected, showError) {
  replace(select, h("option", { value: "" }, "all"));
  if (!serviceName) return;
  try {
    append(select, (await api.spanNames(serviceName)).map((name) => h("option", { value: name }, name)));
    select.value = selected;
  } catch (error) {
    showError(error);
  }
}

async function runSearch(results, params, showError) {
  const query = Object.fromEntries(params);
  query.endTs = Date.now();
  replace(results, h("p", { class: "muted" }, "searching…"));
  try {
    const traces = await api.findTraces(query);
    const summaries = traces.filter((spans) => spans.length).map(traceSummary);
    const longestUs = longest(summaries);
    replace(results,
      h("p", { id: "result-count" }, `${summaries.length} trace${summaries.length === 1 ? "" : "s"}`),
      h("ol", { class: "results" }, summaries.map((summary) => resultItem(summary, longestUs))));
  } catch (error) {
    replace(results);
    showError(error);
  }
}

function resultItem(summary, longestUs) {
  return h("li", { class: summary.errorCount ? "result error" : "result", "data-trace-id": summary.traceId },
    h("a", { href: `#/traces/${encodeURIComponent(summary.traceId)}`, class: "result-link" },
      h("span", { class: "root" }, h("b", {}, summary.rootService), ": ", summary.rootName),
      h("span", { class: "duration" }, formatDuration(summary.durationUs)),
      h("span", { class: "span-count" }, `${summary.spanCount} spans`),
      summary.errorCount ? h("span", { class: "error-mark" }, `${summary.errorCount} errors`) : null,
      h("span", { class: "muted" }, formatTime(summary.startUs))),
    h("div", { class: "services" },
      summary.serviceCounts.map(([name, count]) => h("span", { class: "service-chip" }, `${name} ×${count}`))),
    h("div", { class: "bar-track" }, h("div", { class: "bar", style: { width: `${(summary.durationUs ?? 0) / longestUs * 100}%` } })));
}

function longest(summaries) {
  return Math.max(1, ...summaries.map((summary) => summary.durationUs ?? 0));
}

function field(label, control) {
  return h("label", {}, h("span", {}, label), control);
}

function durationField(us) {
  return us ? `${us}us` : "";
}
