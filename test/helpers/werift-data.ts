/**
 * Browser-free data channels for tests: one werift RTCPeerConnection carrying
 * only SCTP (DTLS, ICE) to one mediasoup WebRtcTransport with SCTP enabled.
 *
 * Every channel is pre-negotiated (no DCEP), as mediasoup-client does: a data
 * producer's channel takes the stream id the client chose for produceData, a
 * data consumer's the stream id mediasoup gave it (newDataConsumer's
 * sctpStreamParameters). werift offers an application m-section (a bootstrap
 * channel) and gets an answer written from mediasoup's parameters, as the
 * media endpoint in werift-endpoint.ts does.
 */
import { RTCDtlsTransport, RTCPeerConnection, type RTCDataChannel, SessionDescription } from 'werift';
import type { types as ms } from 'mediasoup';
import { hostOnlyIce } from './werift-endpoint.js';

export interface RemoteSctpTransportParams {
  id: string;
  iceParameters: ms.IceParameters;
  iceCandidates: ms.IceCandidate[];
  dtlsParameters: ms.DtlsParameters;
  sctpParameters?: ms.SctpParameters;
}

/** The stream a bootstrap channel takes so the offer has an application m-section (never used for data). */
const BOOTSTRAP_STREAM = 1023;

export class WeriftDataEndpoint {
  /** What mediasoup's `connectWebRtcTransport` needs (werift is the DTLS client). */
  readonly dtlsParameters: ms.DtlsParameters;

  private constructor(
    private readonly pc: RTCPeerConnection,
    fingerprints: ms.DtlsFingerprint[],
  ) {
    this.dtlsParameters = { role: 'client', fingerprints };
  }

  static async create(remote: RemoteSctpTransportParams, hostAddress = '127.0.0.1'): Promise<WeriftDataEndpoint> {
    if (!remote.sctpParameters) throw new Error(`transport ${remote.id} has no SCTP (create it with sctpCapabilities)`);
    const certificate = await RTCDtlsTransport.SetupCertificate();
    const pc = new RTCPeerConnection(hostOnlyIce(certificate, hostAddress));
    const fingerprints = certificate.getFingerprints().map((f) => ({ algorithm: f.algorithm as ms.FingerprintAlgorithm, value: f.value }));
    pc.createDataChannel('bootstrap', { negotiated: true, id: BOOTSTRAP_STREAM });
    await pc.setLocalDescription(await pc.createOffer());
    const offer = SessionDescription.parse(pc.localDescription!.sdp);
    const application = offer.media.find((m) => m.kind === 'application');
    if (!application) throw new Error('werift offered no application m-section');
    const mid = application.rtp.muxId ?? '0';
    const lines = [
      'v=0',
      'o=mediasoup-server 1000000 1 IN IP4 0.0.0.0',
      's=-',
      't=0 0',
      'a=ice-lite',
      `a=group:BUNDLE ${mid}`,
      'a=msid-semantic: WMS *',
      'm=application 7 UDP/DTLS/SCTP webrtc-datachannel',
      'c=IN IP4 127.0.0.1',
      `a=mid:${mid}`,
      `a=ice-ufrag:${remote.iceParameters.usernameFragment}`,
      `a=ice-pwd:${remote.iceParameters.password}`,
      ...remote.dtlsParameters.fingerprints.map((fp) => `a=fingerprint:${fp.algorithm} ${fp.value}`),
      'a=setup:passive',
      ...remote.iceCandidates
        .filter((c) => c.protocol === 'udp')
        .map((c) => `a=candidate:${c.foundation} 1 udp ${c.priority} ${c.address ?? c.ip} ${c.port} typ host`),
      'a=end-of-candidates',
      `a=sctp-port:${remote.sctpParameters.port}`,
      `a=max-message-size:${remote.sctpParameters.maxMessageSize}`,
    ];
    await pc.setRemoteDescription({ type: 'answer', sdp: `${lines.join('\r\n')}\r\n` });
    return new WeriftDataEndpoint(pc, fingerprints);
  }

  /** A channel on a stream agreed with mediasoup (a data producer's or a data consumer's), open once SCTP is up. */
  channel(label: string, streamId: number): RTCDataChannel {
    return this.pc.createDataChannel(label, { negotiated: true, id: streamId, ordered: true });
  }

  async close(): Promise<void> {
    await this.pc.close();
  }
}

/** Resolves once a channel is open (SCTP associated over DTLS). */
export function opened(channel: RTCDataChannel, timeoutMs = 10_000): Promise<void> {
  if (channel.readyState === 'open') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`data channel ${channel.label} not open after ${timeoutMs} ms (${channel.readyState})`)), timeoutMs);
    const sub = channel.stateChanged.subscribe((state) => {
      if (state !== 'open') return;
      clearTimeout(timer);
      sub.unSubscribe();
      resolve();
    });
  });
}
