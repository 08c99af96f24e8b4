/**
 * The XML reader's errors: where the tag being handled starts, and the one way an
 * E_PARSE error is made (reader.ts, elements.ts and attributes.ts share it).
 *
 * Contract: every error is ThinError('E_PARSE', "[FILE:]LINE:COLUMN: message",
 * { line, column, element?, attribute?, file? }), line and column 1-based. `tag`
 * points at the start of the current tag (`tagLine`, `tagColumn`, which the reader
 * sets as each tag opens); `at` takes the position from the caller.
 */
import { ThinError } from '../../errors';

export class XmlErrors {
  /** Line of the `<` of the tag being handled. */
  tagLine = 1;
  /** Column of the `<` of the tag being handled. */
  tagColumn = 1;

  constructor(readonly fileName: string | undefined) {}

  /** A problem with the current tag `element` (and its `attribute`, when one is to blame). */
  tag(element: string, message: string, attribute?: string): ThinError {
    return this.at(message, { line: this.tagLine, column: this.tagColumn, element, ...(attribute ? { attribute } : {}) });
  }

  /** A problem at the position in `details`. */
  at(message: string, details: { line: number; column: number; [k: string]: unknown }): ThinError {
    const where = `${this.fileName ? `${this.fileName}:` : ''}${details.line}:${details.column}`;
    return new ThinError('E_PARSE', `${where}: ${message}`, { ...details, ...(this.fileName ? { file: this.fileName } : {}) });
  }
}
