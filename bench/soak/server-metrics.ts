/** Reading the soak server's Prometheus endpoint. */

/** The /metrics text of the server on `port`; throws if it does not answer 200 within 5 s. */
export async function scrapeMetrics(port: number): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5000) });
  if (!response.ok) throw new Error(`metrics endpoint answered ${response.status}`);
  return response.text();
}

/** The value of an unlabelled series, or the sum of a labelled one matching `labels`; NaN if absent. */
export function metric(text: string, name: string, labels = ""): number {
  let sum = 0;
  let found = false;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (!(rest.startsWith(" ") || rest.startsWith("{"))) continue;
    if (labels !== "" && !rest.includes(labels)) continue;
    sum += Number(rest.slice(rest.lastIndexOf(" ") + 1));
    found = true;
  }
  return found ? sum : Number.NaN;
}
