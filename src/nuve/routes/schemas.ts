import { z } from 'zod';
import { boundedJson } from '../../core/bounded-json.js';
import { groupNameSchema } from '../../core/group-calls-protocol.js';
import { eaPolicySchema } from '../../core/subjects.js';

/** C0 controls and DEL (PostgreSQL refuses NUL in text), or a UTF-16 surrogate without its other half. */
const UNSTORABLE = /[\u0000-\u001f\u007f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Text taken from outside that is stored or looked up in the store: printable, well-formed, at most `max` long. */
export const storableText = (max: number) =>
  z
    .string()
    .max(max)
    .refine((text) => !UNSTORABLE.test(text), 'must not contain control characters or unpaired surrogates');

/** A group's name (its own rules, shared with the distributor), storable too. */
export const groupName = groupNameSchema.refine((text) => !UNSTORABLE.test(text), 'must not contain unpaired surrogates');

/** A name: trimmed, not empty. */
const name = () => storableText(256).trim().min(1);

export const roomParams = z.object({ room: storableText(64).min(1) });
export const userParams = roomParams.extend({ user: storableText(256).min(1) });
export const serviceParams = z.object({ service: storableText(64).min(1) });

/**
 * Room options as Licode's clients send them, plus our `eapolicy`. Unknown keys are dropped, as Licode
 * does. `data` is free-form but bounded (depth, size, strings), since it is stored and shown to others.
 */
export const roomOptions = z.object({
  p2p: z.boolean().optional(),
  data: boundedJson().optional(),
  mediaConfiguration: storableText(256).optional(),
  eapolicy: eaPolicySchema.optional(),
  /** The room's group: its members hear of the room's calls. Null takes the room out of its group. */
  group: groupName.nullable().optional(),
});

export const roomName = name();
export const serviceName = name();
export const serviceKey = storableText(256).min(16, 'key must be at least 16 characters');
export const userName = name();
