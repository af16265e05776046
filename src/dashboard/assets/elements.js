// @ts-check
// The page's elements, looked up once (a module runs after the document is parsed), and the small elements the
// panels and the table have in common. A missing element is an error at load, not a silent blank panel.

/** @import { HealthStatus } from "../../domain/health.js" */

/**
 * @template {Element} T
 * @param {string} selector
 * @param {{ new (): T, prototype: T }} type
 * @returns {T}
 */
function find(selector, type) {
  const node = document.querySelector(selector);
  if (!(node instanceof type)) throw new Error(`the page has no ${type.name} ${selector}`);
  return node;
}

export const el = {
  connection: find("#connection", HTMLElement),
  replica: find("#replica", HTMLElement),
  tokenForm: find("#token-form", HTMLFormElement),
  tokenInput: find("#token-input", HTMLInputElement),
  stale: find("#stale", HTMLElement),
  eviction: find("#eviction", HTMLElement),
  actionError: find("#action-error", HTMLElement),
  capacityBar: find("#capacity-bar", HTMLElement),
  capacityFill: find("#capacity-fill", HTMLElement),
  capacityText: find("#capacity-text", HTMLElement),
  successRate: find("#success-rate", HTMLElement),
  successDetail: find("#success-detail", HTMLElement),
  top: find("#top", HTMLOListElement),
  changes: find("#changes", HTMLOListElement),
  capabilityFilter: find("#filter-capability", HTMLSelectElement),
  healthFilter: find("#filter-health", HTMLSelectElement),
  shown: find("#shown", HTMLElement),
  scroller: find("#scroller", HTMLElement),
  table: find("#workers", HTMLTableElement),
  rows: find("#rows", HTMLTableSectionElement),
  legend: find("#legend", HTMLElement),
  /** The table's column headers, each with the sort key it stands for in data-sort. */
  headers: [...document.querySelectorAll("thead th[data-sort]")].filter((th) => th instanceof HTMLTableCellElement),
  counts: {
    healthy: find('[data-count="healthy"]', HTMLElement),
    degraded: find('[data-count="degraded"]', HTMLElement),
    unhealthy: find('[data-count="unhealthy"]', HTMLElement),
    total: find('[data-count="total"]', HTMLElement),
  },
};

/** @type {Readonly<Record<HealthStatus, string>>} Every health has a glyph as well as a colour and a word. */
const HEALTH_GLYPH = { healthy: "✔", degraded: "▲", unhealthy: "✖" };

/**
 * @param {string} value
 * @returns {value is HealthStatus}
 */
export function isHealthStatus(value) {
  return Object.hasOwn(HEALTH_GLYPH, value);
}

/** A health in colour (data-health), glyph and word. @param {HealthStatus} health */
export function healthBadge(health) {
  const badge = span("badge", "");
  badge.dataset.health = health;
  const glyph = span("glyph", HEALTH_GLYPH[health] ?? "?");
  glyph.setAttribute("aria-hidden", "true");
  badge.append(glyph, document.createTextNode(health));
  return badge;
}

/** @param {string} className @param {string} text */
export function span(className, text) {
  const node = document.createElement("span");
  node.className = className;
  node.textContent = text;
  return node;
}

/** @param {string} className @param {string} text */
export function item(className, text) {
  const li = document.createElement("li");
  li.className = className;
  li.textContent = text;
  return li;
}

/** Sets a node's text only when it differs, so an unchanged cell costs no layout. @param {Node} node @param {string} text */
export function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}
