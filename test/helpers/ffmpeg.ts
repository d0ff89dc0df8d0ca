import { type ChildProcess, spawn } from 'node:child_process';

/** RTP parameters a broadcaster announces for what ffmpeg sends (mediasoup-demo's broadcaster recipe). */
export const AUDIO_SSRC = 11111111;
export const VIDEO_SSRC = 22222222;
export const AUDIO_PT = 101;
export const VIDEO_PT = 102;

export const audioRtpParameters = {
  codecs: [{ mimeType: 'audio/opus', payloadType: AUDIO_PT, clockRate: 48000, channels: 2, parameters: { 'sprop-stereo': 1 } }],
  encodings: [{ ssrc: AUDIO_SSRC }],
};
export const videoRtpParameters = {
  codecs: [{ mimeType: 'video/vp8', payloadType: VIDEO_PT, clockRate: 90000 }],
  encodings: [{ ssrc: VIDEO_SSRC }],
};

/**
 * ffmpeg sending a synthetic tone (Opus) and test pattern (VP8) as RTP to
 * two plain transports (rtcp-mux off: RTCP to port+1 as ffmpeg does by default).
 */
export function startFfmpegRtp(target: { ip: string; audioPort: number; audioRtcpPort: number; videoPort: number; videoRtcpPort: number }): ChildProcess {
  const args = [
    '-hide_banner', '-loglevel', 'error', '-re',
    '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
    '-f', 'lavfi', '-i', 'testsrc=size=320x240:rate=15',
    '-map', '0:a:0', '-c:a', 'libopus', '-ac', '2', '-ab', '64k',
    '-payload_type', String(AUDIO_PT), '-ssrc', String(AUDIO_SSRC),
    '-f', 'rtp', `rtp://${target.ip}:${target.audioPort}?rtcpport=${target.audioRtcpPort}&pkt_size=1200`,
    '-map', '1:v:0', '-c:v', 'libvpx', '-b:v', '300k', '-deadline', 'realtime', '-cpu-used', '8', '-g', '30',
    '-pix_fmt', 'yuv420p',
    '-payload_type', String(VIDEO_PT), '-ssrc', String(VIDEO_SSRC),
    '-f', 'rtp', `rtp://${target.ip}:${target.videoPort}?rtcpport=${target.videoRtcpPort}&pkt_size=1200`,
  ];
  const child = spawn('ffmpeg', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr?.on('data', (d: Buffer) => {
    if (process.env.TEST_FFMPEG_LOG) process.stderr.write(d);
  });
  return child;
}
