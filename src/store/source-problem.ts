/** What a source reports about input it could not use; the state DB and the HTTP API show it. */

/** Input that could not be used: a broken file, an invalid document, a failed fetch. */
export interface SourceProblem {
  /** FILE[#DOC] Kind/name: field.path: message — the one line users see. */
  readonly line: string;
  readonly file?: string;
  readonly document?: number;
  readonly kind?: string;
  readonly namespace?: string;
  readonly name?: string;
  readonly path?: string;
  readonly rule?: string;
  /** The message alone, without the location. */
  readonly message: string;
  /** The commit the problem was found in (git sources). */
  readonly revision?: string;
}
