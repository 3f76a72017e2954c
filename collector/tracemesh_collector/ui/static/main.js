// The router: #/ (search, its query in the hash), #/traces/{id} (one trace), #/dependency (the graph).

import { renderDependencies } from "./deps.js";
import { h, replace } from "./dom.js";
import { renderSearch } from "./search.js";
import { renderTrace } from "./trace-view.js";

const main = document.getElementById("main");
const errors = document.getElementById("errors");

function showError(error) {
  replace(errors, h("p", { class: "error-message", role: "alert" }, String(error.message ?? error)));
}

function route() {
  replace(errors);
  const [path, query = ""] = location.hash.replace(/^#/, "").split("?", 2);
  const params = new URLSearchParams(query);
  const trace = /^\/traces\/([^/]+)$/.exec(path);
  document.body.dataset.view = trace ? "trace" : path === "/dependency" ? "dependency" : "search";
  if (trace) return renderTrace(main, decodeURIComponent(trace[1]), showError);
  if (path === "/dependency") return renderDependencies(main, params, showError);
  return renderSearch(main, params, showError);
}

window.addEventListener("hashchange", route);
route();
