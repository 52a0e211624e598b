export type ConfigErrorCode = 'CONFIG_READ' | 'CONFIG_PARSE' | 'CONFIG_INVALID';

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
}
