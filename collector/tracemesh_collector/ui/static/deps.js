// The dependency graph: services as boxes in layers (each service one layer right of its callers),
// calls as arrows labelled with their call and error counts, from /api/v2/dependencies.

import * as api from "./api.js";
import { h, replace, svg } from "./dom.js";
import { LOOKBACKS } from "./format.js";

const NODE_W = 200, NODE_H = 32, GAP_X = 120, GAP_Y = 28, MARGIN = 20;

export async function renderDependencies(root, params, showError) {
  const lookback = h("select", { id: "deps-lookback" },
    LOOKBACKS.map(([label, ms]) => h("option", { value: ms }, `last ${label}`)));
  lookback.value = params.get("lookback") ?? String(86_400_000);
  lookback.addEventListener("change", () => { location.hash = `#/dependency?lookback=${lookback.value}`; });
  const graph = h("div", { id: "dependency-graph" }, h("p", { class: "muted" }, "loading…"));
  replace(root, h("form", { class: "search" }, h("label", {}, h("span", {}, "Time range"), lookback)), graph);
  try {
    const links = await api.dependencies(Date.now(), lookback.value);
    replace(graph, links.length ? drawGraph(links) : h("p", { class: "muted" }, "no calls between services in this time range"));
  } catch (error) {
    replace(graph);
    showError(error);
  }
}

// Longest-path layering; a cycle cannot push a layer past the number of services.
export function layers(links) {
  const names = [...new Set(links.flatMap((link) => [link.parent, link.child]))].sort();
  const layer = new Map(names.map((name) => [name, 0]));
  for (let round = 0; round < names.length; round++) {
    let changed = false;
    for (const { parent, child } of links) {
      if (parent !== child && layer.get(child) < layer.get(parent) + 1 && layer.get(parent) + 1 < names.length) {
        layer.set(child, layer.get(parent) + 1);
        changed = true;
      }
    }
    if (!changed) break;
  }
  return layer;
}

function drawGraph(links) {
  const layer = layers(links);
  const columns = new Map();
  for (const [name, index] of layer) columns.set(index, [...(columns.get(index) ?? []), name]);
  const at = new Map();
  for (const [index, names] of columns) {
    names.forEach((name, row) => at.set(name, { x: MARGIN + index * (NODE_W + GAP_X), y: MARGIN + row * (NODE_H + GAP_Y) }));
  }
  const width = MARGIN * 2 + Math.max(...layer.values()) * (NODE_W + GAP_X) + NODE_W;
  const height = MARGIN * 2 + Math.max(...[...columns.values()].map((names) => names.length)) * (NODE_H + GAP_Y);
  const edges = links.map((link) => {
    const from = at.get(link.parent), to = at.get(link.child);
    const [x1, y1, x2, y2] = [from.x + NODE_W, from.y + NODE_H / 2, to.x, to.y + NODE_H / 2];
    const bend = Math.max(40, Math.abs(x2 - x1) / 2);
    const errors = link.errorCount ? `, ${link.errorCount} errors` : "";
    return svg("g", { class: link.errorCount ? "edge error" : "edge", "data-parent": link.parent, "data-child": link.child },
      svg("title", {}, `${link.parent} → ${link.child}: ${link.callCount} calls${errors}`),
      svg("path", { d: `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`, "marker-end": "url(#arrow)",
        "stroke-width": 1 + Math.log10(Math.max(1, link.callCount)) }),
      svg("text", { x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 4, "text-anchor": "middle" }, `${link.callCount}${errors}`));
  });
  const nodes = [...at].map(([name, { x, y }]) => svg("g", { class: "node", "data-service": name },
    svg("title", {}, name),
    svg("rect", { x, y, width: NODE_W, height: NODE_H, rx: 6 }),
    svg("text", { x: x + NODE_W / 2, y: y + NODE_H / 2 + 4, "text-anchor": "middle" }, name)));
  return svg("svg", { id: "dependency-svg", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": "service dependency graph" },
  svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 8,
    markerHeight: 8, orient: "auto-start-reverse" }, svg("path", { d: "M0,0 L10,5 L0,10 z" }))),
  edges, nodes);
}
