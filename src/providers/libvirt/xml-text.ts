/**
 * Escaping for text that goes into libvirt XML. Every value from a spec (names, paths, cmdline,
 * annotations) passes through `xmlEscape`, so it can never open or close an element or an
 * attribute, and reads back exactly (`]]>` included).
 */

// Characters XML 1.0 cannot carry at all, even as references: control characters other than
// tab, LF and CR, the non-characters U+FFFE/U+FFFF, and lone surrogates.
// eslint-disable-next-line no-control-regex
const UNREPRESENTABLE = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

const REFERENCES: Readonly<Record<string, string>> = {
  '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;',
  // Attribute-value normalisation turns raw tab/LF/CR into spaces: references survive it.
  '\t': '&#9;', '\n': '&#10;', '\r': '&#13;',
};

/**
 * Escapes `value` for element text and for attribute values in either quote style. Throws a
 * RangeError when `value` holds a character XML cannot represent.
 */
export function xmlEscape(value: string): string {
  if (UNREPRESENTABLE.test(value)) {
    throw new RangeError(`cannot put ${JSON.stringify(value.slice(0, 60))} into XML: it holds a control character XML cannot carry`);
  }
  return value.replace(/[&<>"'\t\n\r]/g, (c) => REFERENCES[c] ?? c);
}

/** True when `xmlEscape(value)` would succeed. */
export function isXmlRepresentable(value: string): boolean {
  return !UNREPRESENTABLE.test(value);
}
