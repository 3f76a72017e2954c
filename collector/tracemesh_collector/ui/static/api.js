// Zipkin's v2 query API, addressed relative to the page: under /zipkin/ on Zipkin's port it is
// /zipkin/api/v2/ (as zipkin-server serves it), at / on Jaeger's port it is /api/v2/.

const BASE = "api/v2/";

export class ApiError extends Error {}

export const services = () => get("services");
export const spanNames = (serviceName) => get("spans", { serviceName });
export const findTraces = (query) => get("traces", query);
export const getTrace = (traceId) => get(`trace/${encodeURIComponent(traceId)}`);
export const dependencies = (endTs, lookback) => get("dependencies", { endTs, lookback });

async function get(path, params = {}) {
  const url = new URL(BASE + path, document.baseURI);
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, String(value));
  }
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  if (!response.ok) throw new ApiError(`${url.pathname} answered ${response.status}: ${errorText(await response.text())}`);
  return response.json();
}

// Zipkin's errors are plain text; Jaeger's port wraps them in {"errors": [{"msg"}]}.
function errorText(body) {
  try {
    const message = JSON.parse(body)?.errors?.[0]?.msg;
    if (typeof message === "string") return message;
  } catch {
    // not JSON: plain text
  }
  return body;
}
