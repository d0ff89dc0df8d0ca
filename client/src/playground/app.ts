// The playground page: the SDK as an app uses it (bundled to import /sdk/mediasoup-signal.mjs),
// rooms and tokens from Nuve's dev endpoints, the cluster from GET /status, and the room's chat
// through the chat service (examples/chat.ts: session.call, messages as pushes).
import { type ConnectionState, type LocalTrack, type RemotePeer, type RemoteTrack, RoomClient, Session, SignalError } from '../sdk/index.js';

interface RoomView {
  _id: string;
  name: string;
}

interface ClusterStatus {
  time: string;
  gateways: { id: string; url: string; state: string; rooms: number; peers: number; weight: number }[];
  agents: {
    id: string;
    state: string;
    workers: number;
    routers: number;
    transports: number;
    producers: number;
    consumers: number;
    peers: number;
    cpu: number;
  }[];
  totals: Record<'gateways' | 'agents' | 'workers' | 'rooms' | 'peers' | 'producers' | 'consumers' | 'routers' | 'transports', number>;
}

const ICONS = {
  mic: '<path d="M12 2a3 3 0 0 0-3 3v7a3 3 0 0 0 6 0V5a3 3 0 0 0-3-3z"/><path d="M19 10v2a7 7 0 0 1-14 0v-2"/><path d="M12 19v3"/>',
  micOff:
    '<path d="M2 2l20 20"/><path d="M9 9v3a3 3 0 0 0 5.12 2.12M15 9.34V5a3 3 0 0 0-5.94-.6"/><path d="M17 16.95A7 7 0 0 1 5 12v-2m14 0v2c0 .4-.03.78-.1 1.16"/><path d="M12 19v3"/>',
  cam: '<path d="M23 7l-7 5 7 5V7z"/><rect x="1" y="5" width="15" height="14" rx="2"/>',
  camOff: '<path d="M2 2l20 20"/><path d="M16 16v1a2 2 0 0 1-2 2H3a2 2 0 0 1-2-2V7a2 2 0 0 1 2-2h2m5 0h4a2 2 0 0 1 2 2v3.34l1 1L23 7v10"/>',
  screen: '<rect x="2" y="3" width="20" height="14" rx="2"/><path d="M8 21h8M12 17v4"/>',
  leave: '<path d="M10.7 13.3a16 16 0 0 0 3.4 2.6l1.3-1.3a2 2 0 0 1 2.1-.5c.8.3 1.7.5 2.6.6a2 2 0 0 1 1.7 2v3a2 2 0 0 1-2.2 2A19.8 19.8 0 0 1 3 4.2 2 2 0 0 1 5 2h3a2 2 0 0 1 2 1.7c.1.9.3 1.8.6 2.6a2 2 0 0 1-.5 2.1L8.8 9.7"/><path d="M22 2L2 22"/>',
  volume: '<path d="M11 5L6 9H2v6h4l5 4V5z"/><path d="M15.5 8.5a5 5 0 0 1 0 7"/><path d="M19 5a10 10 0 0 1 0 14"/>',
  volumeOff: '<path d="M11 5L6 9H2v6h4l5 4V5z"/><path d="M23 9l-6 6M17 9l6 6"/>',
};
type IconName = keyof typeof ICONS;

function icon(name: IconName): string {
  return `<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true">${ICONS[name]}</svg>`;
}

function $(id: string): HTMLElement {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} missing`);
  return el;
}

function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, ...children: (Node | string)[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  el.append(...children);
  return el;
}

async function api<T>(path: string, body?: unknown): Promise<T> {
  const res = await fetch(path, {
    method: body === undefined ? 'GET' : 'POST',
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const json = (await res.json().catch(() => ({}))) as { code?: string; message?: string };
  if (!res.ok) throw SignalError.fromServer(json.code ?? `HTTP_${res.status}`, json.message ?? res.statusText, res.status);
  return json as T;
}

// ------------------------------------------------------------------ toasts

function toast(message: string, kind: 'info' | 'error' = 'info', ms = kind === 'error' ? 8000 : 3500): void {
  const el = h('div', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status' });
  el.textContent = message;
  // One notice at a time: a stack would grow down over the page's buttons; errors stay.
  for (const older of $('toasts').querySelectorAll('.toast:not(.error)')) older.remove();
  $('toasts').append(el);
  setTimeout(() => el.remove(), ms);
}

function showError(err: unknown, context?: string): void {
  const e = err instanceof SignalError ? err : new SignalError('INTERNAL', err instanceof Error ? err.message : String(err));
  const el = h('div', { class: 'toast error', role: 'alert', 'data-code': e.code });
  el.append(
    h('span', { class: 'code' }, `${e.serverCode ?? e.code}${e.status !== undefined ? ` (${e.status})` : ''}`),
    ` ${context ? `${context}: ` : ''}${e.message}`,
  );
  $('toasts').append(el);
  setTimeout(() => el.remove(), 10_000);
  console.warn('[playground]', e.toString());
}

// ------------------------------------------------------------------ tiles

const COLORS = ['#7c3aed', '#db2777', '#ea580c', '#0891b2', '#16a34a', '#2563eb', '#9333ea', '#c2410c'];
function colorFor(text: string): string {
  let n = 0;
  for (const c of text) n = (n * 31 + c.charCodeAt(0)) >>> 0;
  return COLORS[n % COLORS.length]!;
}

interface Tile {
  el: HTMLDivElement;
  video: HTMLVideoElement;
  audio?: HTMLAudioElement;
  name: HTMLSpanElement;
  videoTrackId?: string;
}

const tiles = new Map<string, Tile>();

function updateTileCount(): void {
  $('tiles').dataset.count = String(tiles.size);
  const others = [...tiles.keys()].filter((k) => k !== 'local').length;
  $('peer-count').textContent = others === 0 ? 'waiting for others…' : `${others + 1} in the room`;
}

function makeTile(key: string, opts: { name: string; role: string; local: boolean; peerId: string; screen?: boolean; suffix?: string }): Tile {
  const existing = tiles.get(key);
  if (existing) return existing;
  const video = h('video', { autoplay: '', playsinline: '' });
  video.muted = true; // audio plays through the <audio> element
  const name = h('span', { class: 'name' }, opts.name + (opts.suffix ?? ''));
  const label = h('div', { class: 'label' });
  label.innerHTML = `<span class="mic-off" title="microphone muted">${icon('micOff')}</span>`;
  label.append(name);
  if (opts.role === 'viewer') label.append(h('span', { class: 'role' }, 'viewer'));
  const initials = opts.name.split(/\s+/).map((w) => w[0] ?? '').join('').slice(0, 2).toUpperCase() || '?';
  const avatar = h('div', { class: 'avatar' }, h('span', { style: `--avatar:${colorFor(opts.name)}` }, initials));
  const el = h('div', {
    class: `tile ${opts.local ? 'local' : 'remote'}${opts.screen ? ' screen' : ''}`,
    'data-peer-id': opts.peerId,
    'data-peer-name': opts.name,
  });
  el.append(video, avatar, label);
  const tile: Tile = { el, video, name };
  if (!opts.local && !opts.screen) {
    const audio = h('audio', { autoplay: '' });
    const btn = h('button', { type: 'button', class: 'tile-btn', 'aria-pressed': 'false', title: 'Mute for me' });
    btn.innerHTML = icon('volume');
    btn.addEventListener('click', () => {
      audio.muted = !audio.muted;
      btn.setAttribute('aria-pressed', String(audio.muted));
      btn.innerHTML = icon(audio.muted ? 'volumeOff' : 'volume');
      btn.title = audio.muted ? 'Unmute for me' : 'Mute for me';
    });
    el.append(audio, btn);
    tile.audio = audio;
  }
  tiles.set(key, tile);
  // Local first, then arrival order.
  if (opts.local) $('tiles').prepend(el);
  else $('tiles').append(el);
  updateTileCount();
  return tile;
}

function removeTile(key: string): void {
  const tile = tiles.get(key);
  if (!tile) return;
  tile.video.srcObject = null;
  if (tile.audio) tile.audio.srcObject = null;
  tile.el.remove();
  tiles.delete(key);
  updateTileCount();
}

function setTileVideo(tile: Tile, track: MediaStreamTrack | undefined): void {
  tile.videoTrackId = track?.id;
  tile.video.srcObject = track ? new MediaStream([track]) : null;
  tile.el.classList.toggle('has-video', Boolean(track));
  if (track) tile.video.play().catch(() => undefined);
}

// ------------------------------------------------------------------ cluster panel

function renderStatus(status: ClusterStatus): void {
  const t = status.totals;
  const stats: [string, number][] = [
    ['gateways', t.gateways],
    ['agents', t.agents],
    ['workers', t.workers],
    ['rooms', t.rooms],
    ['peers', t.peers],
    ['routers', t.routers],
    ['producers', t.producers],
    ['consumers', t.consumers],
  ];
  $('totals').replaceChildren(...stats.map(([k, v]) => h('div', { class: 'stat', 'data-stat': k }, h('b', {}, String(v)), h('span', {}, k))));
  const fact = (label: string, value: string | number) => {
    const s = h('span', {}, `${label} `);
    s.append(h('b', {}, String(value)));
    return s;
  };
  $('gw-list').replaceChildren(
    ...(status.gateways.length
      ? status.gateways.map((g) =>
          h(
            'li',
            { class: `node ${g.state}` },
            h('div', { class: 'id', title: g.id }, g.id),
            h('div', { class: 'facts' }, fact('rooms', g.rooms), fact('peers', g.peers), fact('', g.url), ...(g.state !== 'available' ? [fact('', g.state)] : [])),
          ),
        )
      : [h('li', { class: 'empty' }, 'no gateway registered')]),
  );
  $('agent-list').replaceChildren(
    ...(status.agents.length
      ? status.agents.map((a) => {
          const cpu = Math.min(100, Math.round((a.cpu / Math.max(1, a.workers)) * 100));
          const bar = h('div', { class: 'cpu', title: `CPU ${cpu}% of ${a.workers} worker(s)` }, h('i', { style: `width:${cpu}%` }));
          return h(
            'li',
            { class: `node ${a.state}` },
            h('div', { class: 'id', title: a.id }, a.id),
            h(
              'div',
              { class: 'facts' },
              fact('workers', a.workers),
              fact('routers', a.routers),
              fact('transports', a.transports),
              fact('producers', a.producers),
              fact('consumers', a.consumers),
              fact('peers', a.peers),
            ),
            bar,
          );
        })
      : [h('li', { class: 'empty' }, 'no media agent')]),
  );
  $('status-updated').textContent = `updated ${new Date(status.time).toLocaleTimeString()}`;
  $('status-summary').textContent = `${t.rooms} room${t.rooms === 1 ? '' : 's'} · ${t.peers} peer${t.peers === 1 ? '' : 's'}`;
}

async function pollStatus(): Promise<void> {
  for (;;) {
    if (document.visibilityState === 'visible') {
      try {
        renderStatus(await api<ClusterStatus>('/status'));
      } catch {
        $('status-updated').textContent = 'status unavailable';
      }
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
}

// ------------------------------------------------------------------ lobby

const roomSelect = $('room-select') as HTMLSelectElement;
const nameInput = $('name') as HTMLInputElement;
const params = new URLSearchParams(location.search);

async function loadRooms(select?: string): Promise<void> {
  const rooms = await api<RoomView[]>('/dev/rooms');
  const wanted = select ?? params.get('room') ?? roomSelect.value;
  roomSelect.replaceChildren(...rooms.map((r) => h('option', { value: r._id }, r.name)));
  if (rooms.length === 0) roomSelect.append(h('option', { value: '', disabled: '', selected: '' }, 'no rooms yet — create one'));
  const match = rooms.find((r) => r._id === wanted || r.name === wanted);
  if (match) roomSelect.value = match._id;
}

async function createRoom(): Promise<void> {
  const input = $('new-room') as HTMLInputElement;
  const name = input.value.trim() || undefined;
  const room = await api<RoomView & { created: boolean }>('/dev/rooms', { name });
  input.value = '';
  await loadRooms(room._id);
  toast(room.created ? `Room “${room.name}” created` : `Room “${room.name}” selected`);
}

function role(): 'presenter' | 'viewer' {
  return ((document.querySelector('input[name=role]:checked') as HTMLInputElement | null)?.value ?? 'presenter') as 'presenter' | 'viewer';
}

function syncRole(): void {
  const viewer = role() === 'viewer';
  for (const id of ['with-mic', 'with-cam']) ($(id) as HTMLInputElement).disabled = viewer;
}

// ------------------------------------------------------------------ chat (the chat service)

/**
 * The room's chat: a Session (scopes rpc and push) that joins the chat service's room of this call's
 * room id; messages are said with `chat.say` and arrive, everyone's, as pushes.
 */
class RoomChat {
  private readonly session: Session;
  private closed = false;

  constructor(
    private readonly room: string,
    private readonly user: string,
  ) {
    this.session = new Session({ getToken: async () => (await api<{ token: string }>('/dev/sessions', { user })).token });
    this.session.on('push', ({ data }) => {
      const message = data as { room?: string; from?: string; text?: string };
      if (message.room === this.room && typeof message.from === 'string' && typeof message.text === 'string') this.show(message.from, message.text);
    });
    this.session.on('state', (state) => this.setState(state === 'connected' ? '' : state));
  }

  async open(): Promise<void> {
    $('chat-log').replaceChildren();
    $('chat').hidden = false;
    this.setState('connecting…');
    try {
      await this.session.connect();
      await this.join();
      this.setState('');
    } catch (err) {
      // The call goes on without its chat (e.g. SERVICE_NOT_RUNNING: the platform runs no chat service).
      this.setState(`unavailable (${err instanceof SignalError ? err.code : 'error'})`);
      ($('chat-send') as HTMLButtonElement).disabled = true;
    }
  }

  async say(text: string): Promise<void> {
    try {
      await this.session.call('chat', 'say', { room: this.room, text });
    } catch (err) {
      // The room moved to another chat instance (instances joined or left) and starts empty there: join again.
      if (!(err instanceof SignalError && err.code === 'NOT_FOUND')) throw err;
      await this.join();
      await this.session.call('chat', 'say', { room: this.room, text });
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    void this.session.call('chat', 'leave', { room: this.room }).catch(() => undefined).finally(() => this.session.close());
    $('chat').hidden = true;
  }

  private async join(): Promise<void> {
    await this.session.call('chat', 'join', { room: this.room });
    ($('chat-send') as HTMLButtonElement).disabled = false;
  }

  private show(from: string, text: string): void {
    const log = $('chat-log');
    const item = h('li', { class: from === this.user ? 'mine' : 'other', 'data-from': from }, h('b', {}, from), text);
    log.append(item);
    while (log.children.length > 200) log.firstElementChild?.remove();
    item.scrollIntoView({ block: 'nearest' });
  }

  private setState(text: string): void {
    $('chat-state').textContent = text;
  }
}

let chat: RoomChat | undefined;

async function sendChat(event: Event): Promise<void> {
  event.preventDefault();
  const input = $('chat-text') as HTMLInputElement;
  const text = input.value.trim();
  if (!text || !chat) return;
  input.value = '';
  await chat.say(text).catch((err: unknown) => showError(err, 'chat'));
}

// ------------------------------------------------------------------ call

let client: RoomClient | undefined;

function setConnState(state: ConnectionState | 'new', reason?: string): void {
  const pill = $('conn-state');
  pill.dataset.state = state;
  pill.textContent = { new: 'not connected', connecting: 'connecting…', connected: 'connected', reconnecting: 'reconnecting…', disconnected: 'disconnected', closed: 'left' }[state];
  pill.title = reason ?? '';
}

function renderControls(): void {
  const c = client;
  const local = (source: 'microphone' | 'camera' | 'screen') => c?.localTracks.find((t) => t.source === source);
  const mic = local('microphone');
  const cam = local('camera');
  const screen = local('screen');
  const set = (id: string, on: boolean, iconName: IconName, title: string) => {
    const b = $(id);
    b.dataset.on = String(on);
    b.innerHTML = icon(iconName);
    b.title = title;
    b.setAttribute('aria-label', title);
  };
  set('btn-mic', Boolean(mic && !mic.muted), mic && !mic.muted ? 'mic' : 'micOff', !mic ? 'Start microphone' : mic.muted ? 'Unmute microphone' : 'Mute microphone');
  set('btn-cam', Boolean(cam && !cam.muted), cam && !cam.muted ? 'cam' : 'camOff', !cam ? 'Start camera' : cam.muted ? 'Turn camera on' : 'Turn camera off');
  set('btn-screen', Boolean(screen), 'screen', screen ? 'Stop sharing' : 'Share screen');
  set('btn-leave', false, 'leave', 'Leave');
  const localTile = tiles.get('local');
  localTile?.el.classList.toggle('mic-muted', !mic || mic.muted);
  const camTrack = cam && !cam.muted ? cam.track : undefined;
  if (localTile && localTile.videoTrackId !== camTrack?.id) setTileVideo(localTile, camTrack);
}

function peerMainVideo(peer: RemotePeer): RemoteTrack | undefined {
  return peer.tracks.find((t) => t.kind === 'video' && t.subscribed && t.source !== 'screen' && !t.muted);
}

function renderPeer(peer: RemotePeer): void {
  const tile = makeTile(peer.id, { name: peer.displayName, role: peer.role, local: false, peerId: peer.id });
  tile.name.textContent = peer.displayName;
  tile.el.dataset.peerName = peer.displayName;
  const main = peerMainVideo(peer);
  if (main?.track.id !== tile.videoTrackId) setTileVideo(tile, main?.track);
  const audio = peer.tracks.find((t) => t.kind === 'audio' && t.subscribed);
  if (tile.audio) {
    const current = (tile.audio.srcObject as MediaStream | null)?.getAudioTracks()[0];
    if (audio?.track !== current) {
      tile.audio.srcObject = audio ? new MediaStream([audio.track]) : null;
      if (audio) tile.audio.play().catch(() => undefined);
    }
  }
  tile.el.classList.toggle('mic-muted', !audio || audio.muted);
  // Extra video tracks (a screen share) get their own tile.
  for (const t of peer.tracks) {
    if (t.kind !== 'video' || t === main || !t.subscribed) continue;
    if (t.source !== 'screen' && main && t.source === main.source && !t.muted) continue;
    if (t.muted) continue;
    const extra = makeTile(`track:${t.id}`, { name: peer.displayName, suffix: ' (screen)', role: peer.role, local: false, peerId: peer.id, screen: true });
    if (extra.videoTrackId !== t.track.id) setTileVideo(extra, t.track);
  }
}

function setupClient(c: RoomClient): void {
  c.on('connectionState', (state, _prev, reason) => {
    setConnState(state, reason);
    if (state === 'reconnecting') toast(`Connection lost (${reason ?? 'unknown'}), rejoining…`);
    if (state === 'connected' && reason === 'rejoined') toast('Rejoined the room');
  });
  c.on('peerJoined', (peer) => {
    renderPeer(peer);
    toast(`${peer.displayName} joined`);
  });
  c.on('peerUpdated', renderPeer);
  c.on('peerLeft', (peer) => {
    removeTile(peer.id);
    for (const key of [...tiles.keys()]) if (tiles.get(key)!.el.dataset.peerId === peer.id) removeTile(key);
    toast(`${peer.displayName} left`);
  });
  const onTrack = (track: RemoteTrack, peer: RemotePeer) => {
    renderPeer(peer);
    if (track.kind === 'video') for (const key of [...tiles.keys()]) if (key === `track:${track.id}` && (!track.subscribed || track.muted)) removeTile(key);
  };
  c.on('trackAdded', onTrack);
  c.on('trackMuted', onTrack);
  c.on('trackUnmuted', onTrack);
  c.on('trackRemoved', (track, peer) => {
    removeTile(`track:${track.id}`);
    if (tiles.has(peer.id)) renderPeer(peer);
  });
  c.on('activeSpeaker', ({ peerId }) => {
    for (const [key, tile] of tiles) {
      const id = key === 'local' ? c.peerId : tile.el.dataset.peerId;
      tile.el.classList.toggle('speaking', peerId !== null && id === peerId && !tile.el.classList.contains('screen'));
    }
  });
  const local = (t: LocalTrack) => {
    renderControls();
    if (t.source === 'screen') {
      if (c.localTracks.some((x) => x.source === 'screen')) {
        const tile = makeTile('local-screen', { name: c.displayName, suffix: ' (your screen)', role: 'presenter', local: true, peerId: c.peerId, screen: true });
        setTileVideo(tile, t.track);
      } else removeTile('local-screen');
    }
  };
  c.on('localTrackPublished', local);
  c.on('localTrackUnpublished', local);
  c.on('localTrackMuted', local);
  c.on('localTrackUnmuted', local);
  c.on('error', (err) => {
    showError(err);
    if (c.state === 'disconnected' && client === c) void leave();
  });
}

async function join(event: Event): Promise<void> {
  event.preventDefault();
  const roomId = roomSelect.value;
  const name = nameInput.value.trim();
  if (!roomId) return toast('Pick or create a room first', 'error');
  if (!name) return toast('Enter your name', 'error');
  const r = role();
  localStorage.setItem('mss.name', name);
  const joinBtn = $('join') as HTMLButtonElement;
  joinBtn.disabled = true;
  try {
    const getToken = async () => (await api<{ token: string }>('/dev/tokens', { roomId, user: name, role: r })).token;
    const c = new RoomClient({ token: await getToken(), getToken, displayName: name });
    client = c;
    setupClient(c);
    await c.join();
    $('room-title').textContent = roomSelect.selectedOptions[0]?.textContent ?? 'room';
    $('lobby').hidden = true;
    $('room').hidden = false;
    history.replaceState(null, '', `?room=${encodeURIComponent(roomId)}`);
    makeTile('local', { name, suffix: ' (you)', role: r, local: true, peerId: c.peerId });
    renderControls();
    for (const peer of c.peers) renderPeer(peer);
    chat = new RoomChat(roomId, name);
    void chat.open();
    if (r === 'presenter') {
      if (($('with-mic') as HTMLInputElement).checked) await c.publishMicrophone().catch((e: unknown) => showError(e, 'microphone'));
      if (($('with-cam') as HTMLInputElement).checked) await c.publishCamera({ simulcast: true }).catch((e: unknown) => showError(e, 'camera'));
    }
    renderControls();
  } catch (err) {
    showError(err, 'join');
    await leave();
  } finally {
    joinBtn.disabled = false;
  }
}

async function leave(): Promise<void> {
  const c = client;
  client = undefined;
  chat?.close();
  chat = undefined;
  const lost = c?.state === 'disconnected';
  await c?.leave().catch(() => undefined);
  for (const key of [...tiles.keys()]) removeTile(key);
  $('room').hidden = true;
  $('lobby').hidden = false;
  setConnState(lost ? 'disconnected' : 'new');
  void loadRooms().catch(() => undefined);
}

async function toggle(source: 'microphone' | 'camera' | 'screen'): Promise<void> {
  const c = client;
  if (!c) return;
  const pub = c.localTracks.find((t) => t.source === source);
  try {
    if (source === 'screen') {
      if (pub) await c.unpublish('screen');
      else await c.publishScreen();
    } else if (!pub) {
      if (source === 'microphone') await c.publishMicrophone();
      else await c.publishCamera({ simulcast: true });
    } else if (pub.muted) await c.unmute(source);
    else await c.mute(source);
  } catch (err) {
    showError(err, source);
  }
  renderControls();
}

function init(): void {
  nameInput.value = params.get('name') ?? localStorage.getItem('mss.name') ?? '';
  $('lobby').addEventListener('submit', (e) => void join(e));
  $('create-room').addEventListener('click', () => void createRoom().catch((e: unknown) => showError(e, 'create room')));
  $('new-room').addEventListener('keydown', (e) => {
    if (e.key === 'Enter') {
      e.preventDefault();
      void createRoom().catch((err: unknown) => showError(err, 'create room'));
    }
  });
  $('refresh-rooms').addEventListener('click', () => void loadRooms().catch((e: unknown) => showError(e, 'rooms')));
  for (const radio of document.querySelectorAll('input[name=role]')) radio.addEventListener('change', syncRole);
  if (params.get('role') === 'viewer') (document.querySelector('input[name=role][value=viewer]') as HTMLInputElement).checked = true;
  syncRole();
  $('btn-mic').addEventListener('click', () => void toggle('microphone'));
  $('btn-cam').addEventListener('click', () => void toggle('camera'));
  $('btn-screen').addEventListener('click', () => void toggle('screen'));
  $('btn-leave').addEventListener('click', () => void leave());
  $('chat-form').addEventListener('submit', (e) => void sendChat(e));
  $('copy-link').addEventListener('click', () => {
    void navigator.clipboard?.writeText(location.href).then(
      () => toast('Link copied'),
      () => toast(location.href),
    );
  });
  if (matchMedia('(max-width: 820px)').matches) ($('cluster') as HTMLDetailsElement).open = false;
  renderControls();
  void loadRooms().catch((e: unknown) => showError(e, 'rooms'));
  void pollStatus();
  addEventListener('pagehide', () => {
    chat?.close();
    void client?.leave();
  });
}

/** Debug handle (also used by the browser tests). */
declare global {
  interface Window {
    playground: { readonly client: RoomClient | undefined; readonly chat: RoomChat | undefined };
  }
}
window.playground = {
  get client() {
    return client;
  },
  get chat() {
    return chat;
  },
};

init();
