import { InvalidArgumentError } from "./errors.js";
import { quote } from "./validation.js";

/** A worker's labels: Kubernetes' rules for keys and values. */
export type Labels = Readonly<Record<string, string>>;

/** At most this many labels on one worker. */
export const MAX_LABELS = 64;
/** At most this many characters in a version. */
export const MAX_VERSION_LENGTH = 128;

const NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const NAME_RULE = "1 to 63 characters [a-z0-9A-Z-_.] that start and end alphanumeric";
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
// Control characters, format characters (bidi overrides, zero-width) and every separator, spaces included.
const NOT_IN_VERSION = /[\p{Cc}\p{Cf}\p{Z}]/u;

/** Why a label key breaks Kubernetes' rules, or undefined if it keeps them. */
export function labelKeyProblem(key: string): string | undefined {
  const slash = key.indexOf("/");
  const name = slash < 0 ? key : key.slice(slash + 1);
  if (slash >= 0) {
    const prefix = key.slice(0, slash);
    if (prefix.length === 0 || prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix)) {
      return `has prefix ${quote(prefix)}: a prefix must be a DNS subdomain (lowercase a-z, 0-9, "-" and ".", at most 253 characters)`;
    }
  }
  if (name.length === 0 || name.length > 63 || !NAME.test(name)) return `has name ${quote(name)}: a name must be ${NAME_RULE}`;
  return undefined;
}

/** Why a label value breaks Kubernetes' rules, or undefined if it keeps them. */
export function labelValueProblem(value: string): string | undefined {
  if (value === "") return undefined;
  if (value.length > 63 || !NAME.test(value)) return `must be empty or ${NAME_RULE}, got ${quote(value)}`;
  return undefined;
}

/** @throws InvalidArgumentError naming the label at fault. */
export function validateLabels(labels: Labels, field = "labels"): void {
  const keys = Object.keys(labels);
  if (keys.length > MAX_LABELS) throw new InvalidArgumentError(field, `must have at most ${MAX_LABELS} entries, got ${keys.length}`);
  for (const key of keys) {
    const keyProblem = labelKeyProblem(key);
    if (keyProblem !== undefined) throw new InvalidArgumentError(`${field}[${quote(key)}]`, `key ${keyProblem}`);
    const valueProblem = labelValueProblem(labels[key]!);
    if (valueProblem !== undefined) throw new InvalidArgumentError(`${field}[${quote(key)}]`, `value ${valueProblem}`);
  }
}

/** @throws InvalidArgumentError unless the version is empty or a short printable string without spaces. */
export function validateVersion(version: string, field = "version"): void {
  if (version.length > MAX_VERSION_LENGTH) throw new InvalidArgumentError(field, `must be at most ${MAX_VERSION_LENGTH} characters, got ${version.length}`);
  const found = NOT_IN_VERSION.exec(version);
  if (found) throw new InvalidArgumentError(field, `must not contain white space, control or format characters, got ${quote(version)}`);
}

/** One requirement of a selector. */
export type Requirement =
  | { readonly op: "exists" | "not-exists"; readonly key: string }
  | { readonly op: "in" | "notin"; readonly key: string; readonly values: ReadonlySet<string> };

/** A parsed label selector: every requirement must hold. The empty selector matches every worker. */
export class LabelSelector {
  static readonly EVERYTHING = new LabelSelector([]);

  private constructor(readonly requirements: readonly Requirement[]) {}

  /**
   * Parses Kubernetes' set-based syntax: requirements separated by commas,
   * each `key=value` (or `==`), `key!=value`, `key in (a,b)`,
   * `key notin (a,b)`, `key` or `!key`.
   * @throws InvalidArgumentError naming the position (1-based) and what was expected there.
   */
  static parse(text: string, field = "filter.label_selector"): LabelSelector {
    if (text.trim() === "") return LabelSelector.EVERYTHING;
    return new LabelSelector(new SelectorParser(text, field).parse());
  }

  get isEmpty(): boolean {
    return this.requirements.length === 0;
  }

  /** Kubernetes' semantics: `!=` and `notin` hold for a worker without the label. */
  matches(labels: Labels): boolean {
    for (const requirement of this.requirements) {
      const value = Object.hasOwn(labels, requirement.key) ? labels[requirement.key] : undefined;
      switch (requirement.op) {
        case "exists":
          if (value === undefined) return false;
          break;
        case "not-exists":
          if (value !== undefined) return false;
          break;
        case "in":
          if (value === undefined || !requirement.values.has(value)) return false;
          break;
        case "notin":
          if (value !== undefined && requirement.values.has(value)) return false;
          break;
      }
    }
    return true;
  }
}

type Token =
  | { readonly kind: "word"; readonly text: string; readonly at: number }
  | { readonly kind: "=" | "==" | "!=" | "!" | "," | "(" | ")" | "end"; readonly at: number };

const WORD = /[^\s,()=!]+/y;

/** A hand-written recursive-descent parser, so every error can name the position where the text went wrong. */
class SelectorParser {
  private readonly tokens: Token[] = [];
  private next = 0;

  constructor(
    private readonly text: string,
    private readonly field: string,
  ) {
    this.tokenize();
  }

  parse(): Requirement[] {
    const requirements: Requirement[] = [];
    for (;;) {
      requirements.push(this.requirement());
      const token = this.take();
      if (token.kind === "end") return requirements;
      if (token.kind !== ",") this.fail(token, "a comma between requirements or the end of the selector");
    }
  }

  private requirement(): Requirement {
    const first = this.take();
    if (first.kind === "!") return { op: "not-exists", key: this.key(this.take()) };
    const key = this.key(first);
    const operator = this.peek();
    switch (operator.kind) {
      case ",":
      case "end":
        return { op: "exists", key };
      case "=":
      case "==":
      case "!=":
        this.take();
        return { op: operator.kind === "!=" ? "notin" : "in", key, values: new Set([this.value(true)]) };
      case "word":
        if (operator.text === "in" || operator.text === "notin") {
          this.take();
          return { op: operator.text, key, values: this.valueSet() };
        }
        return this.fail(operator, `an operator (=, ==, !=, in, notin) after the key ${quote(key)}`);
      default:
        return this.fail(operator, `an operator (=, ==, !=, in, notin) after the key ${quote(key)}`);
    }
  }

  private valueSet(): ReadonlySet<string> {
    const open = this.take();
    if (open.kind !== "(") this.fail(open, `"(" to open the set of values`);
    if (this.peek().kind === ")") this.fail(this.peek(), "at least one value in the set");
    const values = new Set<string>();
    for (;;) {
      values.add(this.value(false));
      const token = this.take();
      if (token.kind === ")") return values;
      if (token.kind !== ",") this.fail(token, `a comma or ")" in the set of values`);
    }
  }

  /** A label value; empty where the syntax allows (after `=`, as the last or only value before `,` or `)`). */
  private value(single: boolean): string {
    const token = this.peek();
    if (token.kind !== "word") {
      if (token.kind === "end" || token.kind === "," || token.kind === ")") {
        if (single || token.kind !== "end") return "";
      }
      return this.fail(token, "a label value");
    }
    this.take();
    const problem = labelValueProblem(token.text);
    if (problem !== undefined) this.fail(token, `a valid label value: it ${problem}`);
    return token.text;
  }

  private key(token: Token): string {
    if (token.kind !== "word") return this.fail(token, "a label key");
    const problem = labelKeyProblem(token.text);
    if (problem !== undefined) this.fail(token, `a valid label key: ${quote(token.text)} ${problem}`);
    return token.text;
  }

  private take(): Token {
    return this.tokens[Math.min(this.next++, this.tokens.length - 1)]!;
  }

  private peek(): Token {
    return this.tokens[Math.min(this.next, this.tokens.length - 1)]!;
  }

  private fail(token: Token, expected: string): never {
    const found = token.kind === "end" ? "the end of the selector" : token.kind === "word" ? quote(token.text) : `"${token.kind}"`;
    throw new InvalidArgumentError(this.field, `has a syntax error at position ${token.at + 1}: expected ${expected}, found ${found}`);
  }

  private tokenize(): void {
    const { text } = this;
    let at = 0;
    while (at < text.length) {
      const c = text[at]!;
      if (/\s/.test(c)) {
        at++;
      } else if (c === "=" || c === "!") {
        const pair = text.slice(at, at + 2);
        if (pair === "==" || pair === "!=") {
          this.tokens.push({ kind: pair, at });
          at += 2;
        } else {
          this.tokens.push({ kind: c, at });
          at++;
        }
      } else if (c === "," || c === "(" || c === ")") {
        this.tokens.push({ kind: c, at });
        at++;
      } else {
        WORD.lastIndex = at;
        const word = WORD.exec(text)![0];
        this.tokens.push({ kind: "word", text: word, at });
        at += word.length;
      }
    }
    this.tokens.push({ kind: "end", at: text.length });
  }
}
