/** Words of PromQL that look like series names but are not: operators, modifiers, and names of functions and aggregations (followed by "(", handled apart). */
const KEYWORDS = new Set(["and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "inf", "nan"]);

/**
 * The series names a PromQL query selects, for checking them against what a
 * server exports. Grafana's variables (`$job`, `${datasource}`,
 * `$__rate_interval`) are ignored. Not a parser: enough for queries written
 * by hand, with label values in double quotes.
 */
export function seriesIn(query: string): string[] {
  const stripped = query
    // Label values and other strings.
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    // Matchers: their label names are not series.
    .replace(/\{[^}]*\}/g, " ")
    // Grouping and matching label lists.
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ")
    // Range and subquery durations, and Grafana variables.
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\$\{[^}]*\}|\$\w+/g, " ");
  const names = new Set<string>();
  for (const match of stripped.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*(?=\s*(\()?)/g)) {
    const [name, call] = [match[0], match[1]];
    const before = stripped[match.index - 1];
    // Digits and durations ("5m", "1e3") start with a digit; a name right after one is part of it.
    if (before !== undefined && /[0-9.]/.test(before)) continue;
    if (call !== undefined || KEYWORDS.has(name.toLowerCase())) continue;
    names.add(name);
  }
  return [...names];
}

/** `query` with Grafana's variables replaced by values PromQL accepts, for promtool to check its syntax. */
export function withoutGrafanaVariables(query: string): string {
  return query
    .replace(/\$__rate_interval|\$\{__rate_interval\}|\$__interval|\$\{__interval\}/g, "5m")
    .replace(/\$\{(\w+)(?::\w+)?\}|\$(\w+)/g, "x");
}
