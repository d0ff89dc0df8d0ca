import { setTimeout as sleep } from 'node:timers/promises';
import type { RTCDataChannel } from 'werift';
import { ProtooClient } from './protoo-client.js';
import { type RemoteSctpTransportParams, WeriftDataEndpoint, opened } from './werift-data.js';

export interface DataPeerOptions {
  name: string;
  /** Distances to report ('{agentId: ms}'), which place the peer. */
  rtts?: Record<string, number>;
  /** Open a sending transport with one data producer (label 'chat', stream 0); default true. */
  produce?: boolean;
  /** Open a receiving transport and accept every data consumer offered (newDataConsumer); default true. */
  consume?: boolean;
}

/** SCTP capabilities as mediasoup-client reports them. */
const sctpCapabilities = { numStreams: { OS: 1024, MIS: 1024 } };

/**
 * A real data-channel participant in Node (werift: ICE, DTLS, SCTP) driven
 * over the signaling protocol in mediasoup-demo order: its own data producer
 * on a sending transport, and a channel for each data consumer the gateway
 * offers on a receiving one, keeping every message that arrives.
 */
export class DataPeer {
  dataProducerId?: string;
  /** Data consumers offered to this peer (newDataConsumer), in order. */
  readonly dataConsumers: { id: string; dataProducerId: string; peerId: string; channel: RTCDataChannel }[] = [];
  /** Messages received, with the data producer they came from. */
  readonly received: { dataProducerId: string; text: string }[] = [];
  private send?: WeriftDataEndpoint;
  private recv?: WeriftDataEndpoint;
  private producer?: RTCDataChannel;
  private closed = false;

  private constructor(readonly client: ProtooClient) {}

  static async join(url: string, token: string, options: DataPeerOptions): Promise<DataPeer> {
    const peer = new DataPeer(await ProtooClient.connect(url, token));
    await peer.start(options);
    return peer;
  }

  private async start(options: DataPeerOptions): Promise<void> {
    const { client } = this;
    if (options.rtts) await client.request('reportAgentRtts', { rtts: options.rtts });
    await client.request('getRouterRtpCapabilities');
    let sendTransportId: string | undefined;
    if (options.produce !== false) {
      const info = (await client.request('createWebRtcTransport', { producing: true, consuming: false, sctpCapabilities })) as RemoteSctpTransportParams;
      this.send = await WeriftDataEndpoint.create(info);
      await client.request('connectWebRtcTransport', { transportId: info.id, dtlsParameters: this.send.dtlsParameters });
      sendTransportId = info.id;
    }
    if (options.consume !== false) {
      const info = (await client.request('createWebRtcTransport', { producing: false, consuming: true, sctpCapabilities })) as RemoteSctpTransportParams;
      this.recv = await WeriftDataEndpoint.create(info);
      await client.request('connectWebRtcTransport', { transportId: info.id, dtlsParameters: this.recv.dtlsParameters });
      client.handleRequests(async (method, data) => {
        if (method === 'newDataConsumer') this.accept(data);
        return {};
      });
    }
    await client.request('join', { displayName: options.name, sctpCapabilities });
    if (this.send && sendTransportId) {
      const sctpStreamParameters = { streamId: 0, ordered: true };
      this.producer = this.send.channel('chat', sctpStreamParameters.streamId);
      await opened(this.producer);
      const { id } = await client.request('produceData', { transportId: sendTransportId, sctpStreamParameters, label: 'chat' });
      this.dataProducerId = id;
    }
  }

  private accept(data: { id: string; dataProducerId: string; peerId: string; label: string; sctpStreamParameters: { streamId: number; ordered?: boolean } }): void {
    const channel = this.recv!.channel(data.label, data.sctpStreamParameters.streamId);
    channel.onMessage.subscribe((message) => {
      this.received.push({ dataProducerId: data.dataProducerId, text: message.toString() });
    });
    this.dataConsumers.push({ id: data.id, dataProducerId: data.dataProducerId, peerId: data.peerId, channel });
  }

  /** Sends one message on this peer's data producer. */
  sendText(text: string): void {
    if (!this.producer) throw new Error('this peer produces no data');
    this.producer.send(text);
  }

  /** The data consumer of `dataProducerId`, once the gateway offered it. */
  async dataConsumerOf(dataProducerId: string, timeoutMs = 15_000): Promise<{ id: string; channel: RTCDataChannel }> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const found = this.dataConsumers.find((c) => c.dataProducerId === dataProducerId);
      if (found) return found;
      if (Date.now() > until) throw new Error(`no data consumer of ${dataProducerId} within ${timeoutMs} ms`);
      await sleep(50);
    }
  }

  /**
   * Has `from` send numbered messages until one reaches this peer (the
   * channel may open a moment after the offer); resolves with it.
   */
  async assertReceivesFrom(from: DataPeer, timeoutMs = 15_000): Promise<string> {
    const { channel } = await this.dataConsumerOf(from.dataProducerId!, timeoutMs);
    await opened(channel, timeoutMs);
    const tag = `${Math.random().toString(36).slice(2)}`;
    const until = Date.now() + timeoutMs;
    for (let n = 0; ; n++) {
      from.sendText(`${tag} ${n}`);
      await sleep(100);
      const got = this.received.find((m) => m.dataProducerId === from.dataProducerId && m.text.startsWith(`${tag} `));
      if (got) return got.text;
      if (Date.now() > until) throw new Error(`no message of ${from.dataProducerId} within ${timeoutMs} ms (${n + 1} sent)`);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.client.close();
    await this.send?.close();
    await this.recv?.close();
  }
}
