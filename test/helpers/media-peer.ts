import { setTimeout as sleep } from 'node:timers/promises';
import { measureAgentRtts } from '../../client/src/sdk/agent-rtt.js';
import type { AgentProbes } from '../../src/protocol/signaling.js';
import { ProtooClient } from './protoo-client.js';
import {
  type WeriftConsumer,
  type WeriftProducer,
  WeriftRecvTransport,
  WeriftSendTransport,
  weriftRtpCapabilities,
} from './werift-endpoint.js';

export interface MediaPeerOptions {
  name: string;
  /** Distances to report: measured like the SDK does ('measure'), given ('{agentId: ms}'), or none (agents probe). */
  rtts?: 'measure' | Record<string, number>;
  /** Publish an Opus stream from ffmpeg (default true). */
  publish?: boolean;
  /** Open a receiving transport and consume everyone (default true). */
  consume?: boolean;
  /** Local address for ICE (default loopback). */
  hostAddress?: string;
}

/**
 * A real WebRTC participant in Node (werift: ICE, DTLS, SRTP) driven over
 * the signaling protocol in mediasoup-demo order, reporting distances first
 * as the browser SDK does.
 */
export class MediaPeer {
  readonly consumers: { id: string; producerId: string; peerId: string; local: WeriftConsumer }[] = [];
  producerId?: string;
  probes?: AgentProbes;
  private send?: WeriftSendTransport;
  private sendTransportId?: string;
  private recv?: WeriftRecvTransport;
  private producer?: WeriftProducer;

  private constructor(readonly client: ProtooClient) {}

  static async join(url: string, token: string, options: MediaPeerOptions): Promise<MediaPeer> {
    const peer = new MediaPeer(await ProtooClient.connect(url, token));
    await peer.start(options);
    return peer;
  }

  private async start(options: MediaPeerOptions): Promise<void> {
    const { client } = this;
    if (options.rtts === 'measure') {
      this.probes = await client.request('getAgentProbes');
      const rtts = await measureAgentRtts(this.probes!.probes, this.probes!.timeoutMs);
      if (Object.keys(rtts).length > 0) await client.request('reportAgentRtts', { rtts });
    } else if (options.rtts) {
      await client.request('reportAgentRtts', { rtts: options.rtts });
    }
    await client.request('getRouterRtpCapabilities');
    if (options.publish !== false) {
      const info = await client.request('createWebRtcTransport', { producing: true, consuming: false });
      this.send = await WeriftSendTransport.create(info, options.hostAddress);
      await client.request('connectWebRtcTransport', { transportId: info.id, dtlsParameters: this.send.dtlsParameters });
      this.sendTransportId = info.id;
    }
    if (options.consume !== false) {
      const info = await client.request('createWebRtcTransport', { producing: false, consuming: true });
      this.recv = await WeriftRecvTransport.create(info, options.hostAddress);
      await client.request('connectWebRtcTransport', { transportId: info.id, dtlsParameters: this.recv.dtlsParameters });
      client.handleRequests(async (method, data) => {
        if (method === 'newConsumer') {
          this.consumers.push({ id: data.id, producerId: data.producerId, peerId: data.peerId, local: await this.recv!.consume(data) });
        }
        return {};
      });
    }
    await client.request('join', { displayName: options.name, rtpCapabilities: weriftRtpCapabilities });
    if (this.send) {
      this.producer = await this.send.produce({ kind: 'audio' });
      const { id } = await client.request('produce', {
        transportId: this.sendTransportId,
        kind: 'audio',
        rtpParameters: this.producer.rtpParameters,
      });
      this.producerId = id;
      await this.send.waitForConnected();
      await this.producer.startFfmpegSource();
    }
  }

  /** The consumer of `producerId`, once the gateway offered it. */
  async consumerOf(producerId: string, timeoutMs = 15_000): Promise<{ id: string; local: WeriftConsumer }> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const found = this.consumers.find((c) => c.producerId === producerId);
      if (found) return found;
      if (Date.now() > until) throw new Error(`no consumer of ${producerId} within ${timeoutMs} ms`);
      await sleep(50);
    }
  }

  /** Packets the agent sent on this consumer (its outbound-rtp stats). */
  async sentPackets(consumerId: string): Promise<number> {
    const stats = (await this.client.request('getConsumerStats', { consumerId })) as { type: string; packetCount: number }[];
    return stats.find((s) => s.type === 'outbound-rtp')?.packetCount ?? 0;
  }

  /**
   * Asserts media of `producerId` reaches this peer and keeps coming: the
   * agent's packet count and the packets werift decrypted both grow.
   */
  async assertReceiving(producerId: string, timeoutMs = 15_000): Promise<{ sent: number; received: number }> {
    const consumer = await this.consumerOf(producerId, timeoutMs);
    await this.recv!.waitForConnected();
    await consumer.local.waitForPackets(10, timeoutMs);
    const before = { sent: await this.sentPackets(consumer.id), received: consumer.local.packets };
    await sleep(1200);
    const after = { sent: await this.sentPackets(consumer.id), received: consumer.local.packets };
    if (!(after.sent > before.sent && after.received > before.received)) {
      throw new Error(`media of ${producerId} stalled: ${JSON.stringify({ before, after })}`);
    }
    return { sent: after.sent - before.sent, received: after.received - before.received };
  }

  private closed = false;

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.client.close();
    await this.producer?.close();
    await this.send?.close();
    await this.recv?.close();
  }
}
