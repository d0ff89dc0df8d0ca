import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SignalError } from '../client/src/sdk/errors.js';

// How the SDK names the server's refusals: typed codes, and a newer server's unknown codes kept.

test("the server's codes pass through: catalogue errors and the reasons it ends sessions for", () => {
  for (const [name, status] of [
    ['PRODUCE_NOT_ALLOWED', 403],
    ['TOKEN_ALREADY_USED', 401],
    ['NO_AGENT_AVAILABLE', 503],
  ] as const) {
    const err = SignalError.fromServer(name, 'refused', status);
    assert.deepEqual([err.code, err.status, err.serverCode], [name, status, undefined]);
  }
  // `closing` names outside the catalogue, and the SDK's own codes in a close reason.
  for (const name of ['MEDIA_AGENT_LOST', 'PROTOCOL_ABUSE', 'KICKED', 'CONNECTION_CLOSED']) assert.equal(SignalError.fromServer(name, 'x').code, name);
});

test('a code this SDK does not know becomes UNKNOWN_SERVER_ERROR, the name kept in serverCode', () => {
  const err = SignalError.fromServer('ROOM_FULL', 'the room is full', 409);
  assert.deepEqual([err.code, err.serverCode, err.status, err.message], ['UNKNOWN_SERVER_ERROR', 'ROOM_FULL', 409, 'the room is full']);
  assert.equal(err.toString(), 'UNKNOWN_SERVER_ERROR ROOM_FULL (409): the room is full');
  // Names that merely look like object properties are not codes.
  assert.equal(SignalError.fromServer('toString', 'x').code, 'UNKNOWN_SERVER_ERROR');
  assert.equal(SignalError.fromServer('__proto__', 'x').serverCode, '__proto__');
});
