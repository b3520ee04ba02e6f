/**
 * Parser for xl domain configuration files (the `xl.cfg` syntax).
 *
 * Grammar (informal):
 *
 *   file      := statement ( ( NEWLINE | ';' ) statement )*
 *   statement := empty | KEY ws* ( '=' | '+=' ) ws* value
 *   value     := string | number | list
 *   list      := '[' ( value ( ',' value )* ','? )? ']'    (may span lines and nest)
 *   string    := '"' chars '"' | "'" chars "'"
 *   number    := [+-]? ( '0x' HEX+ | '0' OCT* | DIGIT+ ( '.' DIGIT+ )? )
 *   KEY       := [A-Za-z_][A-Za-z0-9_.]*
 *
 * Every file xl's own reader (libxlu_cfg_l.l / libxlu_cfg_y.y) accepts is accepted, with
 * the same values:
 *   - keys may contain dots; lists may hold lists (`vnuma = [ [ "pnode=0" ] ]`);
 *   - `key += value` appends to an earlier string or list of that key (a string and a list
 *     cannot be added); the entry is marked `appended`, and xl refuses `+=` for numbers;
 *   - a number with a leading 0 is octal, as C's strtol reads it (`010` is 8);
 *   - xl's NUMBER token is any `[0-9][0-9a-fx]*`: one that is not a number here (`09`,
 *     `12abc`) is kept as a string, as xl keeps every value, and refused only where a
 *     number is read;
 *   - string escapes are xl's: \" \' \\ \a \b \f \n \r \t \v; xl drops an "octal" escape
 *     (a backslash, an octal digit, then two or three decimal digits) and refuses \x.
 * Beyond xl: upper-case keys, signed and decimal numbers (for sim_ keys), a `#` comment
 * at the end of the file without a newline, CR LF line ends and a UTF-8 BOM.
 *
 * `#` starts a comment that runs to the end of the line (outside strings),
 * including inside lists. As in xl, a key given twice keeps its later value;
 * the earlier occurrence is recorded in `XlCfg.duplicates`.
 */

/** A scalar value: a (unquoted) string or a number. */
export type XlScalar = string | number;
/** Any value a key can hold: a scalar or a list (lists may nest, as xl's `vnuma`). */
export type XlValue = XlScalar | XlValue[];

export interface XlCfgEntry {
  value: XlValue;
  /** 1-based line of the key; 0 when the entry comes from elsewhere (see `origin`). */
  line: number;
  /** 1-based column of the key (set by `parseXlCfg`). */
  column?: number;
  /** Set when the value was built with `+=` (xl refuses `+=` where it reads a number). */
  appended?: true;
  /** Where a value not written in this file comes from, e.g. "/etc/xen/xl-ha.conf:7 [defaults]". */
  origin?: string;
}

/** A key that appeared more than once; the entry at `line` is the one kept. */
export interface XlCfgDuplicate {
  key: string;
  /** Line of the occurrence that was overridden. */
  previousLine: number;
  /** Line of the occurrence that won. */
  line: number;
}

export interface XlCfg {
  /** Keys in order of (last) definition. */
  entries: Map<string, XlCfgEntry>;
  /** File name (or other label) used in messages. */
  source: string;
  /** Overridden duplicate keys, in file order. Always set by `parseXlCfg`. */
  duplicates?: XlCfgDuplicate[];
}

/** Label used in messages when `parseXlCfg` is not given a source name. */
export const DEFAULT_CFG_SOURCE = '<config>';

/** Any problem found while reading an xl config file. */
export class XlCfgError extends Error {
  readonly source: string;
  readonly line: number;
  readonly column: number | undefined;
  /** The message without the `file:line:` prefix. */
  readonly detail: string;

  constructor(source: string, line: number, detail: string, column?: number) {
    super(`${source}:${line}${column === undefined ? '' : `:${column}`}: ${detail}`);
    this.name = 'XlCfgError';
    this.source = source;
    this.line = line;
    this.column = column;
    this.detail = detail;
  }
}

/** A syntax error; always names file:line:column. */
export class XlCfgSyntaxError extends XlCfgError {
  declare readonly column: number;

  constructor(source: string, line: number, column: number, detail: string) {
    super(source, line, detail, column);
    this.name = 'XlCfgSyntaxError';
  }
}

const KEY_START = /[A-Za-z_]/;
const KEY_CHAR = /[A-Za-z0-9_.]/;
/** Characters that may be glued to a number token (to report `512M` as one bad token). */
const WORD_CHAR = /[A-Za-z0-9_.]/;
/** Nesting bound for lists (xl has none short of its parser stack; this keeps recursion safe). */
const MAX_LIST_DEPTH = 256;

const ESCAPES: Readonly<Record<string, string>> = {
  '"': '"',
  "'": "'",
  '\\': '\\',
  a: '\x07',
  b: '\b',
  f: '\f',
  n: '\n',
  r: '\r',
  t: '\t',
  v: '\v',
};
const ESCAPE_LIST = '\\" \\\' \\\\ \\a \\b \\f \\n \\r \\t \\v';

/** Show a character (or end of input) in a message. */
function describeChar(ch: string | undefined): string {
  if (ch === undefined) return 'end of file';
  if (ch === '\n') return 'end of line';
  if (ch === '\t') return 'a tab';
  if (ch === "'") return `"'"`;
  const code = ch.codePointAt(0) ?? 0;
  if (code < 0x20 || code === 0x7f) return `control character U+${code.toString(16).padStart(4, '0')}`;
  return `'${ch}'`;
}

class Parser {
  private pos = 0;
  private readonly lineStarts: number[] = [0];
  readonly entries = new Map<string, XlCfgEntry>();
  readonly duplicates: XlCfgDuplicate[] = [];
  /** Source text of keys whose value is a number token (for `+=`, which joins text). */
  private readonly raw = new Map<string, string>();

  constructor(
    private readonly text: string,
    private readonly source: string,
  ) {
    for (let i = 0; i < text.length; i++) {
      if (text[i] === '\n') this.lineStarts.push(i + 1);
    }
  }

  // ---- position helpers -------------------------------------------------

  private lineCol(index: number): { line: number; column: number } {
    let lo = 0;
    let hi = this.lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.lineStarts[mid]! <= index) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, column: index - this.lineStarts[lo]! + 1 };
  }

  private fail(index: number, detail: string): never {
    const { line, column } = this.lineCol(index);
    throw new XlCfgSyntaxError(this.source, line, column, detail);
  }

  private peek(offset = 0): string | undefined {
    return this.text[this.pos + offset];
  }

  /** Skip spaces, tabs and carriage returns (not newlines). */
  private skipBlanks(): void {
    for (;;) {
      const ch = this.text[this.pos];
      if (ch === ' ' || ch === '\t' || ch === '\r' || ch === '\f' || ch === '\v') this.pos++;
      else return;
    }
  }

  /** Skip a `#` comment up to (not including) the newline. */
  private skipComment(): void {
    if (this.text[this.pos] !== '#') return;
    const nl = this.text.indexOf('\n', this.pos);
    this.pos = nl < 0 ? this.text.length : nl;
  }

  /** Skip blanks, newlines and comments (used inside lists). */
  private skipSpaceAndComments(): void {
    for (;;) {
      this.skipBlanks();
      const ch = this.text[this.pos];
      if (ch === '#') this.skipComment();
      else if (ch === '\n') this.pos++;
      else return;
    }
  }

  // ---- grammar ------------------------------------------------------------

  parse(): void {
    while (this.pos < this.text.length) {
      this.skipBlanks();
      const ch = this.peek();
      if (ch === undefined) break;
      if (ch === '\n' || ch === ';') {
        this.pos++;
        continue;
      }
      if (ch === '#') {
        this.skipComment();
        continue;
      }
      this.statement();
    }
  }

  private statement(): void {
    const keyStart = this.pos;
    const first = this.peek();
    if (first === undefined || !KEY_START.test(first)) {
      this.fail(keyStart, `expected a key name (letters, digits, '_' and '.', not starting with a digit), got ${describeChar(first)}`);
    }
    while (this.pos < this.text.length && KEY_CHAR.test(this.text[this.pos]!)) this.pos++;
    const key = this.text.slice(keyStart, this.pos);
    this.skipBlanks();
    const opAt = this.pos;
    let append = false;
    if (this.peek() === '+' && this.peek(1) === '=') {
      append = true;
      this.pos++;
    } else if (this.peek() !== '=') {
      this.fail(this.pos, `expected '=' or '+=' after key "${key}", got ${describeChar(this.peek())}`);
    }
    this.pos++;
    this.skipBlanks();
    const valueStart = this.pos;
    const value = this.value(key);
    const valueRaw = typeof value === 'number' ? this.text.slice(valueStart, this.pos) : undefined;
    this.skipBlanks();
    const after = this.peek();
    if (after !== undefined && after !== '\n' && after !== ';' && after !== '#') {
      this.fail(this.pos, `unexpected ${describeChar(after)} after the value of "${key}": expected end of line, ';' or a '#' comment`);
    }

    const { line, column } = this.lineCol(keyStart);
    const previous = this.entries.get(key);
    const entry: XlCfgEntry = { value, line, column };
    if (append) {
      entry.appended = true;
      if (previous) entry.value = this.concat(key, previous, this.raw.get(key), value, valueRaw, opAt);
      // A string built from number tokens keeps no number text.
      if (typeof entry.value === 'number' && valueRaw !== undefined) this.raw.set(key, valueRaw);
      else this.raw.delete(key);
      this.entries.delete(key);
    } else {
      if (previous) {
        this.duplicates.push({ key, previousLine: previous.line, line });
        // Re-insert so that iteration order reflects the definition that counts.
        this.entries.delete(key);
      }
      if (valueRaw !== undefined) this.raw.set(key, valueRaw);
      else this.raw.delete(key);
    }
    this.entries.set(key, entry);
  }

  /** `key += value` as xl does it: strings concatenate, lists concatenate, nothing else. */
  private concat(key: string, previous: XlCfgEntry, previousRaw: string | undefined, value: XlValue, valueRaw: string | undefined, opAt: number): XlValue {
    const prevList = Array.isArray(previous.value);
    if (prevList !== Array.isArray(value)) {
      this.fail(
        opAt,
        `cannot add ${prevList ? 'a single value to the [list]' : 'a [list] to the single value'} of "${key}" (line ${previous.line}): += appends a string to a string or a list to a list`,
      );
    }
    if (Array.isArray(previous.value)) {
      // The parser owns the earlier list: appending in place keeps many `+=` linear.
      for (const v of value as XlValue[]) previous.value.push(v);
      return previous.value;
    }
    // xl keeps numbers as their text: "1" += "2" is "12".
    const text = (v: XlValue, raw: string | undefined) => (typeof v === 'number' ? (raw ?? String(v)) : String(v));
    return text(previous.value, previousRaw) + text(value, valueRaw);
  }

  private value(key: string): XlValue {
    const ch = this.peek();
    if (ch === '[') return this.list(key);
    const scalar = this.scalar(key, 'value');
    if (scalar === undefined) {
      this.fail(this.pos, this.noValueMessage(key, 'value'));
    }
    return scalar;
  }

  private noValueMessage(key: string, what: 'value' | 'list item'): string {
    const ch = this.peek();
    const where = what === 'value' ? `for key "${key}"` : `in the list for key "${key}"`;
    const expected =
      what === 'value' ? 'a quoted string, a number or a [list]' : 'a quoted string, a number or a [list]';
    if (ch !== undefined && /[A-Za-z_]/.test(ch)) {
      let end = this.pos;
      while (end < this.text.length && /[A-Za-z0-9_.:\/-]/.test(this.text[end]!)) end++;
      const word = this.text.slice(this.pos, end);
      return `expected ${expected} ${where}, got bare word ${JSON.stringify(word)} (strings must be quoted)`;
    }
    return `expected ${expected} ${where}, got ${describeChar(ch)}`;
  }

  /** Parse a string or number at the cursor; undefined if neither starts here. */
  private scalar(key: string, what: 'value' | 'list item'): XlScalar | undefined {
    const ch = this.peek();
    if (ch === '"' || ch === "'") return this.string(key);
    if (ch !== undefined && /[0-9+\-.]/.test(ch)) return this.number(key, what);
    return undefined;
  }

  private string(key: string): string {
    const quote = this.peek()!;
    const start = this.pos;
    this.pos++;
    let out = '';
    for (;;) {
      const ch = this.peek();
      if (ch === undefined || ch === '\n') {
        this.fail(start, `unterminated string for key "${key}": missing closing ${quote === '"' ? `'"'` : `"'"`} before ${describeChar(ch)}`);
      }
      if (ch === quote) {
        this.pos++;
        return out;
      }
      if (ch === '\\') {
        const esc = this.peek(1);
        const mapped = esc === undefined ? undefined : ESCAPES[esc];
        if (mapped !== undefined) {
          out += mapped;
          this.pos += 2;
          continue;
        }
        if (esc !== undefined && esc >= '0' && esc <= '7') {
          // xl (xlu__cfgl_dequote) reads up to three more characters as a decimal number
          // and drops the escape; fewer than two digits are an error there.
          const digits = /^[ \t\v\f\r]*[+-]?[0-9]+/.exec(this.text.slice(this.pos + 2, this.pos + 5));
          if (digits && digits[0].length > 1) {
            this.pos += 2 + digits[0].length;
            continue;
          }
          this.fail(this.pos, `invalid octal escape "\\${esc}${this.text.slice(this.pos + 2, this.pos + 4).split(/["'\n]/)[0]}" in string for key "${key}": xl needs two more digits after it, and then drops the character; expected one of ${ESCAPE_LIST}`);
        }
        this.fail(
          this.pos,
          `invalid escape sequence ${esc === undefined || esc === '\n' ? '(backslash at end of line)' : `"\\${esc}"`} in string for key "${key}": expected one of ${ESCAPE_LIST}` +
            (esc === 'x' ? ' (xl refuses \\x escapes)' : ''),
        );
      }
      out += ch;
      this.pos++;
    }
  }

  /** A number, or (for xl's NUMBER tokens that are not numbers here, e.g. 09) its text. */
  private number(key: string, what: 'value' | 'list item'): XlScalar {
    const start = this.pos;
    let end = this.pos;
    if (this.text[end] === '+' || this.text[end] === '-') end++;
    while (end < this.text.length && WORD_CHAR.test(this.text[end]!)) end++;
    const token = this.text.slice(start, end);
    const m = /^([+-]?)(?:0[xX]([0-9a-fA-F]+)|0([0-7]+)|((?:[1-9][0-9]*|0)(?:\.[0-9]+)?))$/.exec(token);
    if (!m) {
      if (token === '+' || token === '-' || token === '') {
        this.fail(start, this.noValueMessage(key, what));
      }
      if (/^[0-9][0-9a-fx]*$/.test(token)) {
        // xl's lexer takes this as one NUMBER token (its values are all strings).
        this.pos = end;
        return token;
      }
      this.fail(start, `invalid number ${JSON.stringify(token)} for key "${key}": expected a decimal integer, a decimal like 1.5, a 0x hex or a 0 octal integer (units such as M or G are not allowed)`);
    }
    const sign = m[1] === '-' ? -1 : 1;
    const magnitude = m[2] !== undefined ? parseInt(m[2], 16) : m[3] !== undefined ? parseInt(m[3], 8) : Number(m[4]);
    const isInteger = m[4] === undefined || !m[4].includes('.');
    if (isInteger && !Number.isSafeInteger(magnitude)) {
      this.fail(start, `number ${token} for key "${key}" is too large (limit ${Number.MAX_SAFE_INTEGER})`);
    }
    this.pos = end;
    // Avoid producing -0 from "-0".
    return magnitude === 0 ? 0 : sign * magnitude;
  }

  private list(key: string, depth = 0): XlValue[] {
    const open = this.pos;
    if (depth >= MAX_LIST_DEPTH) this.fail(open, `lists nested more than ${MAX_LIST_DEPTH} deep for key "${key}"`);
    this.pos++; // '['
    const items: XlValue[] = [];
    for (;;) {
      this.skipSpaceAndComments();
      const ch = this.peek();
      if (ch === undefined) {
        const { line } = this.lineCol(open);
        this.fail(this.pos, `unterminated list for key "${key}" (opened at line ${line}): missing ']'`);
      }
      if (ch === ']') {
        this.pos++;
        return items;
      }
      if (ch === ',') {
        this.fail(this.pos, `unexpected ',' in the list for key "${key}": expected a value before it`);
      }
      const item = ch === '[' ? this.list(key, depth + 1) : this.scalar(key, 'list item');
      if (item === undefined) this.fail(this.pos, this.noValueMessage(key, 'list item'));
      items.push(item);
      this.skipSpaceAndComments();
      const sep = this.peek();
      if (sep === ',') {
        this.pos++;
        continue;
      }
      if (sep === ']') continue;
      if (sep === undefined) {
        const { line } = this.lineCol(open);
        this.fail(this.pos, `unterminated list for key "${key}" (opened at line ${line}): missing ']'`);
      }
      this.fail(this.pos, `expected ',' or ']' in the list for key "${key}", got ${describeChar(sep)}`);
    }
  }
}

/**
 * Parse the text of an xl domain config file.
 * @param source name used in error messages (usually the file path)
 * @throws XlCfgSyntaxError on malformed input
 */
export function parseXlCfg(text: string, source: string = DEFAULT_CFG_SOURCE): XlCfg {
  // Ignore a UTF-8 byte order mark; it would otherwise be a bad key character.
  const body = text.startsWith('\uFEFF') ? text.slice(1) : text;
  const parser = new Parser(body, source);
  parser.parse();
  return { entries: parser.entries, source, duplicates: parser.duplicates };
}

/** Render a value the way it would be written in a cfg file (for messages). */
export function formatXlValue(value: XlValue): string {
  if (Array.isArray(value)) return `[${value.map((v) => formatXlValue(v)).join(', ')}]`;
  if (typeof value === 'number') return String(value);
  return JSON.stringify(value);
}

/**
 * Build an `XlCfg` from plain data (handy for tests and programmatic callers).
 * Entries get `line: 0`, meaning "no source line" (messages then omit it).
 */
export function xlCfgFromObject(obj: Readonly<Record<string, XlValue>>, source: string = DEFAULT_CFG_SOURCE): XlCfg {
  const entries = new Map<string, XlCfgEntry>();
  for (const [key, value] of Object.entries(obj)) {
    entries.set(key, { value: structuredClone(value), line: 0 });
  }
  return { entries, source, duplicates: [] };
}
