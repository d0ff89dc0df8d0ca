import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type MetricObjectWithValues, type MetricValue, Registry } from 'prom-client';
import type { Bus } from '../src/core/bus/bus.js';
import { NatsBus } from '../src/core/bus/nats-bus.js';
import { RabbitMqBus } from '../src/core/bus/rabbitmq-bus.js';
import { createLogger } from '../src/core/logger.js';
import { METRICS_SUBJECT } from '../src/core/metrics.js';
import { type OnlineEvent, OnlineEventSender, type OwnerQueryResult, onlineSubjects, ringKey } from '../src/core/online-events.js';
import { type PushSend, pushSubjects } from '../src/core/push-protocol.js';
import type { GroupCallsNotification } from '../src/distributor/notification.js';
import { BUS_LABEL, CLUSTER_BUSES, RoleProcess } from './helpers/cluster.js';
import { answerEveryoneHasACall } from './helpers/group-calls-stand-in.js';
import { startNats, startRabbitMq } from './helpers/services.js';

/**
 * Distributors as separate processes on a real broker: three of weights 1, 1, 2, then a fourth, then
 * one killed with SIGKILL during a stream of online events. This process plays the rest of the
 * cluster over the same bus: the sender (as a gateway or Nuve runs it), Nuve's answer to
 * `nuve.groups.calls` (every user is in a group with one call going on) and the push role's
 * `push.send`, where every notification is counted by user and event id, as the SDK dedupes them.
 */

const TENANT = 'tenant-distributor-cluster';
const silent = createLogger({ level: 'silent', pretty: false });

for (const busKind of CLUSTER_BUSES) {
  describe(`distributors over ${BUS_LABEL[busKind]}`, () => {
    let broker: { stop(): Promise<void> };
    let busEnv: Record<string, string>;
    let bus: Bus;
    let sender: OnlineEventSender;
    const distributors = new Map<string, RoleProcess>();
    /** Every push.send the distributors made: user and the event id it carried. */
    const pushes: { user: string; eventId: string; messageId: string }[] = [];
    /** Which distributor acknowledged each event. */
    const ackedBy = new Map<string, string>();
    const senderMetrics = new Registry();
    const retried = async () => Number(/mss_online_events_retried_total\{source="api"\} (\d+)/.exec(await senderMetrics.metrics())?.[1] ?? 0);

    before(async () => {
      if (busKind === 'nats') {
        const nats = await startNats();
        broker = nats;
        busEnv = { MSS_BUS__DRIVER: 'nats', MSS_BUS__NATS_URL: nats.url };
        bus = await NatsBus.connect(nats.url, silent);
      } else {
        const rabbit = await startRabbitMq();
        broker = { stop: () => rabbit.dispose() };
        busEnv = { MSS_BUS__DRIVER: 'rabbitmq', MSS_BUS__AMQP_URL: rabbit.url };
        bus = await RabbitMqBus.connect(rabbit.url, silent);
      }
      answerEveryoneHasACall(bus);
      bus.respond(
        pushSubjects.send,
        (payload) => {
          const send = payload as PushSend;
          pushes.push({ user: send.users[0]!, eventId: (send.data as unknown as GroupCallsNotification).eventId, messageId: send.messageId! });
          return { messages: [], reached: 1, offline: [] };
        },
        { queue: 'push' },
      );
      sender = new OnlineEventSender(bus, silent, 'api', { distributorTimeoutMs: 1500, requestTimeoutMs: 2000, retryMinMs: 50, retryMaxMs: 500 });
      sender.registerMetrics(senderMetrics);
      sender.on('acked', (events, owner) => {
        for (const e of events) ackedBy.set(e.id, owner);
      });
      sender.start();
      await Promise.all([startDistributor('dist-1', 1), startDistributor('dist-2', 1), startDistributor('dist-3', 2)]);
      await until('the sender sees three distributors', () => sender.ring.members.length === 3, 15_000);
    }, { timeout: 120_000 });

    after(async () => {
      await sender?.close(0);
      await Promise.all([...distributors.values()].map((d) => d.kill('SIGKILL')));
      await bus?.close();
      await broker?.stop();
    });

    async function startDistributor(id: string, weight: number): Promise<void> {
      const proc = new RoleProcess('distributor', {
        MSS_LOG__LEVEL: process.env.TEST_LOG_LEVEL ?? 'warn',
        ...busEnv,
        MSS_DISTRIBUTOR__ID: id,
        MSS_DISTRIBUTOR__WEIGHT: String(weight),
        MSS_DISTRIBUTOR__HEARTBEAT_MS: '300',
        MSS_DISTRIBUTOR__TIMEOUT_MS: '1500',
      });
      distributors.set(id, proc);
      await proc.start();
    }

    /** Streams online events for `users` (a few per millisecond); resolves with them once every one is acknowledged. */
    async function stream(users: string[], during?: (sent: number) => void): Promise<OnlineEvent[]> {
      const events: OnlineEvent[] = [];
      for (let i = 0; i < users.length; i++) {
        events.push(sender.online(TENANT, users[i]!));
        if (i % 100 === 99) {
          during?.(i + 1);
          await sleep(10);
        }
      }
      await until('every event acknowledged', () => sender.backlog === 0, 60_000);
      return events;
    }

    /** Each live distributor's ring version and owner for every user, as it answers `distributor.<id>.owner`. */
    async function ownersAt(id: string, users: string[]): Promise<OwnerQueryResult> {
      const owners: (string | null)[] = [];
      let version = '';
      for (let i = 0; i < users.length; i += 1000) {
        const answer = await bus.request<OwnerQueryResult>(
          onlineSubjects.owner(id),
          { users: users.slice(i, i + 1000).map((userName) => ({ serviceId: TENANT, userName })) },
          { timeoutMs: 5000 },
        );
        owners.push(...answer.owners);
        version = answer.version;
      }
      return { version, owners };
    }

    /** Every live distributor and this process name the same owner for every user (and have the same ring). */
    async function assertAgreement(users: string[]): Promise<string[]> {
      const mine = users.map((u) => sender.ring.lookup(ringKey(TENANT, u))!);
      for (const id of sender.ring.members) {
        await until(`${id} has the sender's ring`, async () => (await ownersAt(id, users.slice(0, 1))).version === sender.ring.version, 10_000);
        const answer = await ownersAt(id, users);
        assert.equal(answer.version, sender.ring.version, `${id}'s ring version`);
        assert.deepEqual(answer.owners, mine, `${id} names the same owner for every user`);
      }
      return mine;
    }

    const users = Array.from({ length: 6000 }, (_, i) => `user-${i}`);

    test('weights 1, 1, 2: each owns its share within 10 %, every process computes the same owner, and each event went to its owner', async () => {
      const owners = await assertAgreement(users);
      const events = await stream(users);
      const handled = new Map<string, number>();
      events.forEach((e, i) => {
        const by = ackedBy.get(e.id)!;
        assert.equal(by, owners[i], `${e.userName} handled by its owner`);
        handled.set(by, (handled.get(by) ?? 0) + 1);
      });
      for (const [id, due] of [
        ['dist-1', 0.25],
        ['dist-2', 0.25],
        ['dist-3', 0.5],
      ] as const) {
        const share = (handled.get(id) ?? 0) / users.length;
        assert.ok(Math.abs(share / due - 1) < 0.1, `${id} handled ${share} of the users, due ${due}`);
      }
      // Each pushed its users' notification once, under the event's id.
      const byEvent = new Map(pushes.map((p) => [p.eventId, p]));
      for (const e of events) assert.equal(byEvent.get(e.id)?.user, e.userName, `${e.userName} notified`);
      // Each process reports its owned share (the cluster scrape): they sum to 1 and follow the weights.
      const shares = await ownedShares();
      assert.equal(shares.size, 3);
      assert.ok(Math.abs([...shares.values()].reduce((a, b) => a + b, 0) - 1) < 1e-6);
      assert.ok(Math.abs(shares.get('dist-3')! / 0.5 - 1) < 0.1, `dist-3 reports ${shares.get('dist-3')}`);
    });

    test('a fourth distributor takes at most 1.1/N of the users, all from the others to itself', async () => {
      const before = await assertAgreement(users);
      await startDistributor('dist-4', 1);
      await until('the sender sees four distributors', () => sender.ring.members.length === 4, 15_000);
      const afterwards = await assertAgreement(users);
      let moved = 0;
      users.forEach((u, i) => {
        if (before[i] === afterwards[i]) return;
        moved++;
        assert.equal(afterwards[i], 'dist-4', `${u} moved between old distributors`);
      });
      assert.ok(moved / users.length <= 1.1 / 4, `moved ${moved / users.length} of the users`);
      assert.ok(moved / users.length > 0.1, `dist-4 took its share (${moved / users.length})`);
      // And the events follow: a user that moved is handled by dist-4, the others where they were.
      const sample = users.slice(0, 1000);
      const events = await stream(sample);
      events.forEach((e, i) => assert.equal(ackedBy.get(e.id), afterwards[i], `${e.userName}'s event handled by its new owner`));
    });

    test('kill -9 of a distributor during a stream: no event lost, no duplicate left after dedupe by event id', async () => {
      pushes.length = 0;
      const retriedBefore = await retried();
      const victim = 'dist-3';
      let killed: Promise<void> | undefined;
      const events = await stream(users, (sent) => {
        if (sent === 2000) killed = distributors.get(victim)!.kill('SIGKILL');
      });
      await killed;
      await until(`${victim} left the ring`, () => !sender.ring.members.includes(victim), 10_000);
      const resent = (await retried()) - retriedBefore;
      assert.ok(resent > 0, 'the kill hit the stream: sends to the victim failed and went again');
      // Every event reached its user: each pushed at least once, under its own id and to its own user.
      const byEvent = new Map<string, number>();
      for (const p of pushes) {
        assert.equal(p.eventId, p.messageId, 'the push is named by its event');
        byEvent.set(p.eventId, (byEvent.get(p.eventId) ?? 0) + 1);
      }
      const lost = events.filter((e) => !byEvent.has(e.id));
      assert.deepEqual(lost.map((e) => e.userName), [], 'no event lost');
      const expected = new Map(events.map((e) => [e.id, e.userName]));
      assert.ok(pushes.every((p) => expected.get(p.eventId) === p.user), 'no notification for an event never sent');
      // What the SDK does: one per event id. After it, each user has exactly one.
      const perUser = new Map<string, number>();
      for (const id of byEvent.keys()) perUser.set(expected.get(id)!, (perUser.get(expected.get(id)!) ?? 0) + 1);
      assert.ok(users.every((u) => perUser.get(u) === 1), 'each user notified once after dedupe');
      const copies = pushes.length - byEvent.size;
      console.log(`# ${BUS_LABEL[busKind]}: ${events.length} events, ${resent} sends failed and went again, ${pushes.length} pushes, ${copies} raw copies (same event id), 0 after dedupe`);
      // The survivors agree on the ring without the victim.
      await assertAgreement(users);
    });

    /** Each distributor's `mss_distributor_owned_share`, from the cluster metrics scrape on the bus. */
    async function ownedShares(): Promise<Map<string, number>> {
      const parts = await bus.gather<MetricObjectWithValues<MetricValue<string>>[]>(METRICS_SUBJECT, {}, { timeoutMs: 2000 });
      const result = new Map<string, number>();
      for (const metrics of parts) {
        for (const v of metrics.find((m) => m.name === 'mss_distributor_owned_share')?.values ?? []) result.set(String(v.labels.distributor), v.value);
      }
      return result;
    }
  });
}

async function until(what: string, condition: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await Promise.resolve().then(condition).catch(() => false)) return;
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await sleep(50);
  }
}

