// Durations and times as people read them; durations are microseconds, as Zipkin's API has them.

export function formatDuration(us) {
  if (us === undefined || us === null) return "?";
  if (us < 1000) return `${Math.round(us)}μs`;
  if (us < 1_000_000) return `${trim(us / 1000)}ms`;
  return `${trim(us / 1_000_000)}s`;
}

export function formatTime(us) {
  if (!us) return "?";
  const date = new Date(us / 1000);
  return `${date.toLocaleDateString()} ${date.toLocaleTimeString()}.${String(date.getMilliseconds()).padStart(3, "0")}`;
}

// The time ranges a search or the dependency graph looks back over: [label, milliseconds].
export const LOOKBACKS = [["15m", 900_000], ["1h", 3_600_000], ["2h", 7_200_000], ["6h", 21_600_000],
  ["12h", 43_200_000], ["1d", 86_400_000], ["2d", 172_800_000], ["7d", 604_800_000]];

const UNITS_US = { us: 1, "μs": 1, ms: 1000, s: 1_000_000, m: 60_000_000 };

// "250ms", "1.5s", "300us" or a bare number of microseconds; empty means no bound.
export function parseDuration(text) {
  const trimmed = text.trim();
  if (!trimmed) return undefined;
  const match = /^(\d+(?:\.\d+)?)\s*(us|μs|ms|s|m)?$/.exec(trimmed);
  if (!match) throw new Error(`${JSON.stringify(trimmed)} is not a duration: write e.g. 250ms, 1.5s or 300us`);
  return Math.round(Number(match[1]) * UNITS_US[match[2] ?? "us"]);
}

function trim(value) {
  return value.toFixed(3).replace(/\.?0+$/, "");
}
