import type { Findings } from '../config/index.js';
import { print } from './command-line.js';
import { VERIFY_EXIT } from './exit-codes.js';

const LABEL = { ok: 'ok     ', warning: 'warning', problem: 'problem' } as const;

/** Prints every finding, one per line, and a closing verdict; returns the exit code. */
export function reportFindings(name: string, findings: Findings): number {
  for (const { level, subject, detail } of findings.all) print(`${LABEL[level]}  ${subject}: ${detail}`);
  const problems = findings.count('problem');
  const warnings = findings.count('warning');
  const plural = (count: number, word: string): string => `${count} ${word}${count === 1 ? '' : 's'}`;
  // Warnings about the host now (a local app not listening) are said, but the exit code speaks of the configuration.
  const now = findings.all.filter((finding) => finding.now !== undefined).length;
  const tally = `${plural(findings.all.length, 'check')}, ${plural(problems, 'problem')}, ${plural(warnings, 'warning')}${now > 0 ? ` (and ${now} about the host now)` : ''}`;
  if (problems > 0) {
    print(`${name}: ${tally}: the configuration is invalid (exit ${VERIFY_EXIT.invalid})`);
    return VERIFY_EXIT.invalid;
  }
  if (warnings > 0) {
    print(`${name}: ${tally}: it would run; look at the warnings (exit ${VERIFY_EXIT.warnings})`);
    return VERIFY_EXIT.warnings;
  }
  print(`${name}: ${tally}: ok`);
  return VERIFY_EXIT.ok;
}
