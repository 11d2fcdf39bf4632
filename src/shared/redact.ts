/**
 * The one rule for what hyperlet never shows: every environment value of an object (written in
 * it or read from a secret) and the credentials in a URL. This file holds the text half of the
 * rule; api/v1alpha1/redact-object.ts applies the same rule to objects and flattened fields.
 *
 * - Where an object or its fields are shown (HTTP read API, `hyperlet get/describe/diff`),
 *   environment keys stay and values become REDACTED; spec.environmentFrom (where values are
 *   read from) is shown, it is not secret.
 * - Every line of free text that leaves the process (logs, Events, the audit log, condition
 *   messages, HTTP responses) goes through `Redactor.text`: URL userinfo becomes REDACTED, and so
 *   does every secret value the daemon has read (spec.environmentFrom), raw or as escaped in JSON.
 *
 * Caveats: a secret shorter than MIN_SECRET_CHARS is not searched for in free text (it would
 * blank out unrelated words); structured output still never shows it.
 */

/** What stands in for a hidden value. */
export const REDACTED = '<redacted>';

/** Secrets shorter than this are not searched for in free text. */
export const MIN_SECRET_CHARS = 4;

/**
 * `scheme://USERINFO@`: the whole userinfo is a credential (a token is often the user name, as in
 * https://TOKEN@host/). Greedy up to the last '@' before the path, since an unescaped '@' in a
 * password still ends at the host for git and curl.
 */
const URL_USERINFO = /\b([A-Za-z][A-Za-z0-9+.-]*:\/\/)([^\s/?#"'<>\\]*)@/g;

/** `text` with the userinfo of every `scheme://user:password@host` URL in it replaced by REDACTED. */
export function redactUrlCredentials(text: string): string {
  return text.replace(URL_USERINFO, (_match, scheme: string) => `${scheme}${REDACTED}@`);
}

/** Whether `text` holds a URL with userinfo (credentials) in it. */
export function hasUrlCredentials(text: string): boolean {
  URL_USERINFO.lastIndex = 0;
  const found = URL_USERINFO.test(text);
  URL_USERINFO.lastIndex = 0;
  return found;
}

const escapeRegExp = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * Scrubs free text of URL credentials and of every secret value added to it. One per daemon,
 * shared by the logger, the reconcilers (Events, audit, status) and the HTTP server.
 *
 * Guarantees: `text` never returns a string holding an added secret of at least
 * MIN_SECRET_CHARS characters, raw or JSON-escaped. Secrets are kept until the process ends
 * (a rotated-away secret is still a secret).
 */
export class Redactor {
  private readonly secrets = new Set<string>();
  private pattern: RegExp | undefined;

  /** Remembers `value` as secret; values shorter than MIN_SECRET_CHARS are only hidden structurally. */
  add(value: string): void {
    if (value.length < MIN_SECRET_CHARS || this.secrets.has(value)) return;
    this.secrets.add(value);
    this.pattern = undefined;
  }

  /** How many secrets are searched for. */
  get size(): number {
    return this.secrets.size;
  }

  /** `input` with URL credentials and every known secret replaced by REDACTED. */
  text(input: string): string {
    let out = redactUrlCredentials(input);
    if (this.secrets.size === 0) return out;
    this.pattern ??= this.compile();
    out = out.replace(this.pattern, REDACTED);
    return out;
  }

  private compile(): RegExp {
    const forms = new Set<string>();
    for (const s of this.secrets) {
      forms.add(s);
      forms.add(JSON.stringify(s).slice(1, -1)); // as it appears inside a JSON log line
      forms.add(JSON.stringify(JSON.stringify(s)).slice(3, -3)); // inside JSON nested in a JSON string
    }
    // Longest first, so a secret containing another is replaced whole.
    const alternatives = [...forms].filter((f) => f !== '').sort((a, b) => b.length - a.length).map(escapeRegExp);
    return new RegExp(alternatives.join('|'), 'g');
  }
}
