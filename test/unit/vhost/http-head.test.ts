import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { headEnd, HeadError } from '../../../src/net/http-head.js';

const line = fc.stringMatching(/^[A-Za-z0-9-]{1,12}: [ -~]{0,20}$/);
const head = fc.array(line, { maxLength: 6 }).map((lines) => Buffer.from(`GET / HTTP/1.1\r\n${lines.map((text) => `${text}\r\n`).join('')}\r\n`, 'latin1'));

test('a head cut anywhere waits for the rest; once whole, its end is found', { timeout: 30_000 }, () => {
  fc.assert(
    fc.property(head, fc.nat(), (whole, cutAt) => {
      const cut = cutAt % whole.length;
      assert.equal(headEnd(whole.subarray(0, cut), 400), undefined, `cut at ${cut}`);
      assert.equal(headEnd(Buffer.concat([whole, Buffer.from('next bytes\n\r')]), 400), whole.length, 'what follows the head is not read as head');
    }),
    { numRuns: 2000 },
  );
});

test('a bare LF, or a CR followed by anything but LF, fails the head as soon as it is seen', { timeout: 30_000 }, () => {
  fc.assert(
    fc.property(head, fc.nat(), fc.constantFrom('\n', '\rX'), fc.constantFrom(400 as const, 502 as const), (whole, at, bare, status) => {
      // Only where the byte before is not a CR: a CR then an LF is a line end, not a bare LF.
      const text = whole.toString('latin1');
      const index = at % text.length;
      fc.pre(text[index - 1] !== '\r');
      const broken = Buffer.from(`${text.slice(0, index)}${bare}`, 'latin1');
      assert.throws(
        () => headEnd(broken, status),
        (error: unknown) => error instanceof HeadError && error.status === status,
      );
    }),
    { numRuns: 2000 },
  );
});
