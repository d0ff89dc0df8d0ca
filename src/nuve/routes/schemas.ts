import { z } from 'zod';
import { eaPolicySchema } from '../../core/subjects.js';

export const roomParams = z.object({ room: z.string().min(1).max(64) });
export const userParams = roomParams.extend({ user: z.string().min(1).max(256) });
export const serviceParams = z.object({ service: z.string().min(1).max(64) });

/** Room options as Licode's clients send them, plus our `eapolicy`. Unknown keys are ignored, as Licode does. */
export const roomOptions = z.object({
  p2p: z.boolean().optional(),
  data: z.unknown().optional(),
  mediaConfiguration: z.string().max(256).optional(),
  eapolicy: eaPolicySchema.optional(),
});

export const roomName = z.string().trim().min(1).max(256);
