import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { IDLE_WORK_CONN, nextWorkConnState, type WorkConnEvent, type WorkConnState } from '../src/net/index.js';

/** The work conn's state machine as a pure function, over generated sequences of events. */

const EVENTS: fc.Arbitrary<WorkConnEvent> = fc.oneof(
  fc.constant<WorkConnEvent>({ type: 'start' }),
  fc.constant<WorkConnEvent>({ type: 'outer-ended' }),
  fc.constant<WorkConnEvent>({ type: 'peer-ended' }),
  fc.constant<WorkConnEvent>({ type: 'peer-idle' }),
  fc.constant<WorkConnEvent>({ type: 'fault', reason: 'fault' }),
  fc.constant<WorkConnEvent>({ type: 'close', reason: 'close' }),
);

describe('work conn state machine (pure)', () => {
  test('idle again only through both ends and the far side idle; final states stay final', () => {
    fc.assert(
      fc.property(fc.array(EVENTS, { maxLength: 40 }), (events) => {
        let state: WorkConnState = IDLE_WORK_CONN;
        const seen = { outer: false, peer: false, peerIdle: false };
        for (const event of events) {
          const before = state;
          state = nextWorkConnState(state, event);
          if (before.phase === 'reset' || before.phase === 'closed') {
            assert.equal(state, before, 'a final state never changes');
            continue;
          }
          if (event.type === 'start' && before.phase === 'idle') Object.assign(seen, { outer: false, peer: false, peerIdle: false });
          if (event.type === 'outer-ended') seen.outer = true;
          if (event.type === 'peer-ended') seen.peer = true;
          if (event.type === 'peer-idle') seen.peerIdle = true;
          if (before.phase === 'started' && state.phase === 'idle') {
            assert.ok(seen.outer && seen.peer && seen.peerIdle, 'back to idle with both ends through and the far side idle');
          }
          if (before.phase === 'started') assert.notEqual(state.phase, 'closed', 'a conn with a user on it is never closed in order');
          if (event.type === 'fault') assert.equal(state.phase, 'reset');
        }
      }),
      { numRuns: 3000 },
    );
  });
});
