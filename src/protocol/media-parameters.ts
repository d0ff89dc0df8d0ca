import { z } from 'zod';
import { type JsonLimits, boundedJson, boundedJsonObject } from '../core/bounded-json.js';

/**
 * Schemas of the objects clients (WebSocket peers, HTTP broadcasters) send
 * that are stored, echoed to other peers or handed to mediasoup. Each is
 * measured first (depth, size, NUL, finite numbers; iteratively, so a value
 * nested 10,000 levels deep costs one pass and no stack), then shaped: strict
 * where WebRTC fixes the shape (DTLS, SCTP, the device), and for RTP with
 * every field mediasoup uses range-checked and unknown fields let through,
 * as mediasoup ignores them and other client libraries add their own.
 *
 * Real payloads, from Chromium through mediasoup-client: RTP capabilities
 * 188–244 values nested 5 deep (3–4.5 KiB), simulcast RTP parameters 108
 * values nested 5 deep (1.9 KiB), DTLS parameters 6 values nested 3 deep.
 */

const withoutNul = (s: string) => !s.includes('\u0000');
const NUL_REFUSED = 'must not contain NUL characters';

/** Text stored or shown to others: bounded, and without NUL (C strings and PostgreSQL cut or refuse it). */
export function text(maxLength: number) {
  return z.string().max(maxLength).refine(withoutNul, NUL_REFUSED);
}

/** A measured value, then shaped: the shape never walks a value that is too deep or too big. */
function bounded<T extends z.ZodType>(limits: Partial<JsonLimits>, shape: T) {
  return boundedJson(limits).pipe(shape);
}

export const mediaParameterLimits = {
  /** RTP capabilities and parameters: ~16 times the largest real payload. */
  rtp: { maxDepth: 6, maxNodes: 4000, maxStringLength: 1024 },
  /** The app's own data on producers and data producers, repeated to every consumer of them. */
  appData: { maxDepth: 4, maxNodes: 64, maxStringLength: 256 },
} as const satisfies Record<string, JsonLimits>;

const uint32 = z.number().int().min(0).max(0xffff_ffff);
const payloadType = z.number().int().min(0).max(127);
/** RTP header extension ids: 1–14 one-byte, up to 255 two-byte. */
const extensionId = z.number().int().min(1).max(255);
const kind = z.enum(['audio', 'video']);
const mimeType = z.string().max(64).regex(/^(audio|video)\/[^/\s]+$/i, 'must be audio/<codec> or video/<codec>');
/** fmtp parameters: mediasoup takes only strings and numbers. */
const codecParameters = z.record(z.string().max(128), z.union([z.string(), z.number()]));
const rtcpFeedback = z.looseObject({ type: z.string().min(1).max(64), parameter: z.string().max(64).optional() });
const priority = z.enum(['very-low', 'low', 'medium', 'high']);

const rtpCodecCapability = z.looseObject({
  kind: kind.optional(),
  mimeType,
  preferredPayloadType: payloadType.optional(),
  clockRate: uint32.min(1),
  channels: z.number().int().min(1).max(255).optional(),
  parameters: codecParameters.optional(),
  rtcpFeedback: z.array(rtcpFeedback).max(32).optional(),
});

const rtpHeaderExtensionCapability = z.looseObject({
  kind,
  uri: z.string().min(1).max(256),
  preferredId: extensionId,
  preferredEncrypt: z.boolean().optional(),
  direction: z.enum(['sendrecv', 'sendonly', 'recvonly', 'inactive']).optional(),
});

/** What a peer can receive (join, broadcaster egress). */
export const rtpCapabilitiesSchema = bounded(
  mediaParameterLimits.rtp,
  z.looseObject({
    codecs: z.array(rtpCodecCapability).max(128).optional(),
    headerExtensions: z.array(rtpHeaderExtensionCapability).max(64).optional(),
  }),
);

const rtpEncoding = z.looseObject({
  ssrc: uint32.optional(),
  rid: z.string().min(1).max(32).optional(),
  codecPayloadType: payloadType.optional(),
  rtx: z.looseObject({ ssrc: uint32 }).optional(),
  dtx: z.boolean().optional(),
  scalabilityMode: z.string().max(32).optional(),
  scaleResolutionDownBy: z.number().min(1).max(1024).optional(),
  maxBitrate: z.number().min(0).max(0xffff_ffff).optional(),
  maxFramerate: z.number().min(0).max(1000).optional(),
  adaptivePtime: z.boolean().optional(),
  priority: priority.optional(),
  networkPriority: priority.optional(),
  active: z.boolean().optional(),
});

/** What a producer sends (produce, broadcaster producers). */
export const rtpParametersSchema = bounded(
  mediaParameterLimits.rtp,
  z.looseObject({
    mid: z.string().min(1).max(32).optional(),
    codecs: z
      .array(
        z.looseObject({
          mimeType,
          payloadType,
          clockRate: uint32.min(1),
          channels: z.number().int().min(1).max(255).optional(),
          parameters: codecParameters.optional(),
          rtcpFeedback: z.array(rtcpFeedback).max(32).optional(),
        }),
      )
      .min(1)
      .max(64),
    headerExtensions: z
      .array(
        z.looseObject({
          uri: z.string().min(1).max(256),
          id: extensionId,
          encrypt: z.boolean().optional(),
          parameters: codecParameters.optional(),
        }),
      )
      .max(32)
      .optional(),
    encodings: z.array(rtpEncoding).max(16).optional(),
    rtcp: z
      .looseObject({ cname: z.string().max(256).optional(), reducedSize: z.boolean().optional(), mux: z.boolean().optional() })
      .optional(),
    msid: z.string().max(256).optional(),
  }),
);

export type RtpCapabilities = z.output<typeof rtpCapabilitiesSchema>;
export type RtpParameters = z.output<typeof rtpParametersSchema>;

export const dtlsParametersSchema = z.strictObject({
  role: z.enum(['auto', 'client', 'server']).optional(),
  fingerprints: z
    .array(
      z.strictObject({
        algorithm: z.enum(['sha-1', 'sha-224', 'sha-256', 'sha-384', 'sha-512']),
        // sha-512: 64 hex pairs joined by colons, 191 characters.
        value: z.string().min(1).max(256),
      }),
    )
    .min(1)
    .max(8),
});

const sctpStreamCount = z.number().int().min(1).max(65535);
export const sctpCapabilitiesSchema = z.strictObject({
  numStreams: z.strictObject({ OS: sctpStreamCount, MIS: sctpStreamCount }),
});

export const sctpStreamParametersSchema = z.strictObject({
  streamId: z.number().int().min(0).max(65534),
  ordered: z.boolean().optional(),
  maxPacketLifeTime: z.number().int().min(0).max(65535).optional(),
  maxRetransmits: z.number().int().min(0).max(65535).optional(),
  label: text(256).optional(),
  protocol: text(256).optional(),
});

/** The app's data on a producer or data producer; consumers of it receive it. */
export const appDataSchema = boundedJsonObject(mediaParameterLimits.appData);

/** What a client says it runs on, shown to every other peer (mediasoup-demo's `device`). */
export const deviceSchema = z.strictObject({
  flag: text(64).optional(),
  name: text(128).optional(),
  version: text(64).optional(),
});

/** The name shown to other peers. */
export const displayNameSchema = z.string().trim().min(1).max(128).refine(withoutNul, NUL_REFUSED);
