/**
 * Browser-free data channels for tests: one werift RTCPeerConnection per mediasoup WebRtcTransport with SCTP,
 * carrying only an application m-section. Like werift-endpoint.ts it knows nothing of our signaling: it takes
 * what mediasoup gives a client (ICE, DTLS and SCTP parameters, a data consumer's stream) and gives back the
 * dtlsParameters mediasoup needs.
 *
 * mediasoup opens no channel itself (no DCEP): each side creates the channel of a stream, negotiated out of
 * band, as mediasoup-client does: the producer on the stream it tells produceData, a data consumer on the
 * stream mediasoup chose for it (its sctpStreamParameters).
 */
import type { types as ms } from 'mediasoup';
import type { RTCDataChannel } from 'werift';
import { type RemoteTransportParams, WeriftTransportBase, sessionLines, transportLines } from './werift-endpoint.js';

/** What the server tells a client about a WebRtcTransport created with sctpCapabilities. */
export interface RemoteSctpTransportParams extends RemoteTransportParams {
  sctpParameters: ms.SctpParameters;
}

export class WeriftDataTransport extends WeriftTransportBase {
  private constructor(
    remote: RemoteSctpTransportParams,
    pc: WeriftDataTransport['pc'],
    fingerprints: ms.DtlsFingerprint[],
  ) {
    super(remote, pc, fingerprints);
  }

  /** Negotiates the SCTP association: mediasoup's side offers the application m-section, werift answers. */
  static async create(params: RemoteSctpTransportParams, hostAddress = '127.0.0.1'): Promise<WeriftDataTransport> {
    if (!params.sctpParameters) throw new Error(`transport ${params.id} has no SCTP (create it with sctpCapabilities)`);
    const { pc, fingerprints } = await WeriftTransportBase.setup(hostAddress);
    const transport = new WeriftDataTransport(params, pc, fingerprints);
    await pc.setRemoteDescription({ type: 'offer', sdp: transport.buildOffer(params.sctpParameters) });
    await pc.setLocalDescription(await pc.createAnswer());
    return transport;
  }

  /** A channel on `streamId` (negotiated: no DCEP, as mediasoup expects). */
  channel(label: string, sctpStreamParameters: { streamId: number; ordered?: boolean }): RTCDataChannel {
    return this.pc.createDataChannel(label, {
      negotiated: true,
      id: sctpStreamParameters.streamId,
      ordered: sctpStreamParameters.ordered ?? true,
    });
  }

  /** Resolves once the SCTP association is up, when channels can carry messages. */
  async waitForSctp(timeoutMs = 10_000): Promise<void> {
    await this.waitForConnected(timeoutMs);
    const sctp = this.pc.sctpTransport?.sctp;
    if (!sctp) throw new Error(`transport ${this.id}: no SCTP association`);
    if (sctp.state === 'connected') return;
    await sctp.stateChanged.connected.asPromise(timeoutMs);
  }

  private buildOffer(sctp: ms.SctpParameters): string {
    const lines = sessionLines(++this.sdpVersion, ['0']);
    lines.push(
      'm=application 7 UDP/DTLS/SCTP webrtc-datachannel',
      'c=IN IP4 127.0.0.1',
      'a=mid:0',
      `a=sctp-port:${sctp.port}`,
      `a=max-message-size:${sctp.maxMessageSize}`,
      ...transportLines(this.remote, 'actpass'),
    );
    return lines.join('\r\n') + '\r\n';
  }
}
