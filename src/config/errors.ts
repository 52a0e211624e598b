export const CONFIG_ERROR_CODES = ['CONFIG_READ', 'CONFIG_PARSE', 'CONFIG_INVALID'] as const;
export type ConfigErrorCode = (typeof CONFIG_ERROR_CODES)[number];

/** A config problem, always naming the file, and the field (with its line) where known. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    readonly code: ConfigErrorCode,
    message: string,
    readonly file: string,
    readonly field?: string,
    readonly line?: number,
  ) {
    super(message);
  }

  /** Where the problem is, for a JSON log line: `file`, and `line` and `field` when known. */
  where(): { file: string; line?: number; field?: string } {
    return { file: this.file, ...(this.line === undefined ? {} : { line: this.line }), ...(this.field === undefined ? {} : { field: this.field }) };
  }
}
