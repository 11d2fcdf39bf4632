/**
 * Kubernetes resource quantities as hyperlet uses them: sizes in bytes.
 * Binary suffixes (Ki…Ei) are powers of 1024, decimal ones (k…E) powers of 1000,
 * a bare number is bytes. Fractions are allowed ("1.5Gi") and rounded up to a whole byte.
 */
const SUFFIX_FACTORS: Readonly<Record<string, number>> = {
  '': 1,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
  k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
};

/** The pattern the schemas give quantity strings; also used in the generated CRDs. */
export const QUANTITY_PATTERN = '^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$';
const QUANTITY_RE = new RegExp(QUANTITY_PATTERN);

/**
 * Returns the number of bytes `quantity` stands for, or undefined when it is not a quantity or
 * its byte count is not a safe integer (above 2^53 - 1 a number can no longer name one byte).
 */
export function parseQuantity(quantity: string | number): number | undefined {
  if (typeof quantity === 'number') return Number.isSafeInteger(quantity) && quantity >= 0 ? quantity : undefined;
  if (!QUANTITY_RE.test(quantity)) return undefined;
  const match = /^([0-9.]+)(.*)$/.exec(quantity);
  const factor = SUFFIX_FACTORS[match?.[2] ?? ''];
  if (match === null || factor === undefined) return undefined;
  const bytes = Math.ceil(Number(match[1]) * factor);
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/** Formats bytes as the shortest exact binary quantity ("512Mi", "2Gi"), else plain bytes. */
export function formatQuantity(bytes: number): string {
  for (const suffix of ['Ei', 'Pi', 'Ti', 'Gi', 'Mi', 'Ki'] as const) {
    const factor = SUFFIX_FACTORS[suffix] ?? 1;
    if (bytes >= factor && bytes % factor === 0) return `${bytes / factor}${suffix}`;
  }
  return String(bytes);
}
