import { z } from 'zod';

/**
 * A mapping in one of our files: only the listed keys. An unknown key is reported at that key
 * (the YamlFile maps the issue to its line) with the keys that are allowed, since it is most
 * often a typo of one of them.
 */
export function section<Shape extends z.core.$ZodLooseShape>(shape: Shape) {
  const allowed = Object.keys(shape).join(', ');
  return z.strictObject(shape, {
    error: (issue) =>
      issue.code === 'unrecognized_keys' ? `unknown field (expected one of: ${allowed})` : issue.code === 'invalid_type' ? 'expected a mapping' : undefined,
  });
}
