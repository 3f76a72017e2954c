// Pure functions over Zipkin v2 spans (no DOM): the span tree, a trace's summary and its critical path.

export const serviceOf = (span) => span.localEndpoint?.serviceName ?? "unknown";
export const isError = (span) => span.tags !== undefined && Object.hasOwn(span.tags, "error");
const endOf = (span) => (span.timestamp ?? 0) + (span.duration ?? 0);

// The spans as a tree, flattened depth-first with children in time order. Parents are found as
// Zipkin's SpanNode.Builder finds them: a shared SERVER span hangs under the span with its own id
// (the caller's CLIENT), and a child whose parentId names a shared span's id hangs under the shared one.
export function spanTree(spans) {
  const nodes = spans.map((span) => ({ span, children: [], parent: null, depth: 0 }));
  const owner = new Map(); // id -> the non-shared node with it
  const server = new Map(); // id -> the shared node with it
  for (const node of nodes) (node.span.shared ? server : owner).set(node.span.id, node);
  for (const node of nodes) {
    const { span } = node;
    let parent = span.shared ? owner.get(span.id) : undefined;
    if (parent === undefined && span.parentId !== undefined) {
      parent = server.get(span.parentId) ?? owner.get(span.parentId);
    }
    if (parent !== undefined && parent !== node) {
      node.parent = parent;
      parent.children.push(node);
    }
  }
  const byStart = (a, b) => (a.span.timestamp ?? 0) - (b.span.timestamp ?? 0);
  const rows = [];
  const visit = (node, depth) => {
    node.depth = depth;
    rows.push(node);
    node.children.sort(byStart).forEach((child) => visit(child, depth + 1));
  };
  nodes.filter((node) => node.parent === null).sort(byStart).forEach((root) => visit(root, 0));
  return rows;
}

// What a search result shows about one trace.
export function traceSummary(spans) {
  const rows = spanTree(spans);
  const timed = spans.filter((span) => span.timestamp !== undefined);
  const startUs = Math.min(...timed.map((span) => span.timestamp));
  const endUs = Math.max(...timed.map(endOf));
  const serviceCounts = new Map();
  for (const span of spans) serviceCounts.set(serviceOf(span), (serviceCounts.get(serviceOf(span)) ?? 0) + 1);
  const root = rows[0]?.span;
  return {
    traceId: spans[0]?.traceId,
    rootService: root ? serviceOf(root) : "unknown",
    rootName: root?.name ?? "",
    spanCount: spans.length,
    startUs: timed.length ? startUs : undefined,
    durationUs: timed.length ? endUs - startUs : undefined,
    errorCount: spans.filter(isError).length,
    serviceCounts: [...serviceCounts].sort((a, b) => b[1] - a[1]),
  };
}

// The critical path as Jaeger's UI computes it (jaeger-ui TracePage/CriticalPath): from the root's end,
// walk back into the child that finished last, then on from where it started; the time no child covers
// is the parent's own. Children are first clipped to their parent's interval. Returns node -> [[start,end]].
export function criticalPath(rows) {
  const clipped = new Map();
  for (const node of rows) {
    const start = node.span.timestamp ?? 0;
    const parent = node.parent && clipped.get(node.parent);
    const interval = parent
      ? [Math.max(start, parent[0]), Math.min(start + (node.span.duration ?? 0), parent[1])]
      : [start, start + (node.span.duration ?? 0)];
    clipped.set(node, interval);
  }
  const sections = new Map();
  const add = (node, start, end) => {
    if (end > start) sections.set(node, [...(sections.get(node) ?? []), [start, end]]);
  };
  const lastFinishing = (node, before) => {
    let best;
    for (const child of node.children) {
      const [start, end] = clipped.get(child);
      if (end <= start && (child.span.duration ?? 0) > 0) continue; // entirely outside its parent
      if (before !== undefined && end >= before) continue;
      if (best === undefined || end > clipped.get(best)[1]) best = child;
    }
    return best;
  };
  for (const root of rows.filter((node) => node.parent === null)) {
    let node = root;
    let until; // where the child we came back from started
    while (node) {
      const [start, end] = clipped.get(node);
      const sectionEnd = until ?? end;
      const child = lastFinishing(node, until);
      if (child) {
        add(node, clipped.get(child)[1], sectionEnd);
        node = child;
        until = undefined;
      } else {
        add(node, start, sectionEnd);
        until = start;
        node = node.parent;
      }
    }
  }
  return sections;
}
