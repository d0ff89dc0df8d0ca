/**
 * The service SDK (`mediasoup-signal/service`): define a business service and
 * run it against the cluster's bus. Clients reach its `external` methods
 * through the gateway (`session.call`), services and trusted servers every method.
 */
export { defineService, type MethodDefinition, type PushOptions, type ServiceContext, type ServiceDefinition } from './define.js';
export type { CallerIdentity, CallerKind, CallOptions, Strategy } from './define.js';
export { type RunningService, type StartServiceOptions, startService } from './start.js';
export { AppError } from '../core/errors.js';
