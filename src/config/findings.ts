import { ConfigError } from './errors.js';

/**
 * What `verify` found about one thing it checked: `ok` (said so that the operator sees what
 * was looked at), `warning` (it runs, but look at it), `problem` (it will not run as written).
 */
export interface Finding {
  readonly level: 'ok' | 'warning' | 'problem';
  /** What was checked: a file, a group, a port. */
  readonly subject: string;
  readonly detail: string;
  /**
   * Speaks of the host as it is now (a local app not listening), not of the configuration:
   * printed, but left out of the counts that decide the exit code.
   */
  readonly now?: true;
}

/** Collects every finding of one `verify` run, so that one problem never hides the next. */
export class Findings {
  readonly all: Finding[] = [];

  ok(subject: string, detail: string): void {
    this.all.push({ level: 'ok', subject, detail });
  }

  warning(subject: string, detail: string, { now = false } = {}): void {
    this.all.push({ level: 'warning', subject, detail, ...(now ? { now } : {}) });
  }

  problem(subject: string, detail: string): void {
    this.all.push({ level: 'problem', subject, detail });
  }

  /**
   * Runs `check`; a ConfigError it throws (which already names file, line and field) becomes
   * a problem of `subject`. Anything else is a bug and is thrown on.
   */
  attempt<T>(subject: string, check: () => T): T | undefined {
    try {
      return check();
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      this.problem(subject, error.message);
      return undefined;
    }
  }

  /** Findings of `level` about the configuration (those about the host now are left out). */
  count(level: Finding['level']): number {
    return this.all.filter((finding) => finding.level === level && finding.now === undefined).length;
  }
}
