/** What group and app names may be: a group name is also a file name, an app name a key in logs and metrics. */
export const NAME_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$/;
/** What a group name may be, in words for error messages. */
export const GROUP_NAME_RULE = 'letters, digits, "-", "_" or ".", starting with a letter or digit (at most 64)';

/**
 * The one rule for group names, shared by the config loader and the admin API: a name is also
 * a file name (`<groups>/<name>.yaml`), so it can never hold a "/", a NUL or start with ".".
 */
export function isGroupName(name: string): boolean {
  return NAME_PATTERN.test(name);
}

/** Why `name` is refused, quoting at most its start (it may be long or hold control characters). */
export function groupNameProblem(name: string): string {
  return `group name ${JSON.stringify(name.slice(0, 80))} is not valid: expected ${GROUP_NAME_RULE}`;
}
