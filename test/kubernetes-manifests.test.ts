import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { loadConfig } from '../src/core/config.js';

const require = createRequire(import.meta.url);
const DIR = 'deploy/kubernetes';
const defaults = loadConfig({ env: {} });

/** Every object in deploy/kubernetes, validated against the Kubernetes OpenAPI schemas (kubernetes-models). */
function manifests(): { file: string; object: any }[] {
  return readdirSync(DIR)
    .filter((f) => f.endsWith('.yaml'))
    .flatMap((file) =>
      parseAllDocuments(readFileSync(`${DIR}/${file}`, 'utf8')).map((doc) => {
        assert.equal(doc.errors.length, 0, `${file}: ${doc.errors.join('; ')}`);
        return { file, object: doc.toJS() };
      }),
    );
}

function modelFor(apiVersion: string, kind: string): new (o: unknown) => { validate(): void } {
  const group = apiVersion.includes('/') ? apiVersion : `v1`;
  return require(`kubernetes-models/${group}/${kind}`)[kind];
}

const byName = (name: string) => manifests().find((m) => m.object.metadata?.name === name && m.object.kind === 'Deployment')!.object;
const container = (d: any) => d.spec.template.spec.containers[0];
const envOf = (d: any) => Object.fromEntries(container(d).env.filter((e: any) => 'value' in e).map((e: any) => [e.name, e.value]));

test('every manifest passes Kubernetes schema validation', () => {
  const all = manifests();
  assert.ok(all.length >= 10);
  for (const { file, object } of all) {
    const Model = modelFor(object.apiVersion, object.kind);
    assert.doesNotThrow(() => new Model(object).validate(), `${file} ${object.kind}/${object.metadata?.name}`);
  }
});

test('schema validation catches a broken manifest (the check can fail)', () => {
  const broken = structuredClone(byName('gateway'));
  container(broken).ports[0].containerPort = 'eighty';
  const Model = modelFor('apps/v1', 'Deployment');
  assert.throws(() => new Model(broken).validate());
});

test('drain timings and rollout strategy match the configuration defaults', () => {
  for (const [name, graceSec, field] of [
    ['gateway', defaults.gateway.drainGraceSec, 'peers'],
    ['agent', defaults.agent.drainGraceSec, 'routers'],
  ] as const) {
    const d = byName(name);
    assert.equal(d.spec.template.spec.terminationGracePeriodSeconds, graceSec, `${name}: grace period = drainGraceSec`);
    assert.equal(Number(envOf(d)[`MSS_${name.toUpperCase()}__DRAIN_GRACE_SEC`]), graceSec);
    assert.deepEqual(container(d).lifecycle.preStop.exec.command.slice(0, 2), ['node', 'scripts/prestop.mjs']);
    assert.equal(container(d).lifecycle.preStop.exec.command[3], field);
    assert.equal(d.spec.strategy.rollingUpdate.maxSurge, '100%');
    assert.equal(container(d).readinessProbe.httpGet.path, '/ready', `${name}: not ready while draining`);
    assert.equal(container(d).livenessProbe.httpGet.path, '/health');
  }
  const nuve = byName('nuve');
  assert.equal(nuve.spec.strategy.rollingUpdate.maxSurge, '100%');
  assert.ok(nuve.spec.template.spec.terminationGracePeriodSeconds <= 60, 'Nuve exits promptly');
});

test('agents run on the host network with every WebRtcServer port declared', () => {
  const agent = byName('agent');
  assert.equal(agent.spec.template.spec.hostNetwork, true);
  const env = envOf(agent);
  const base = Number(env.MSS_AGENT__WEB_RTC_BASE_PORT);
  const workers = Number(env.MSS_AGENT__NUM_WORKERS);
  const ports = container(agent).ports;
  for (let i = 0; i < workers; i++) {
    for (const protocol of ['UDP', 'TCP']) {
      assert.ok(ports.some((p: any) => p.hostPort === base + i && p.protocol === protocol), `port ${base + i}/${protocol}`);
    }
  }
  assert.equal(Number(env.MSS_AGENT__HEALTH_PORT), container(agent).readinessProbe.httpGet.port === 'probes' ? ports.find((p: any) => p.name === 'probes').containerPort : NaN);
});

test('no real secret is committed in the manifests', () => {
  const secret = manifests().find((m) => m.object.kind === 'Secret')!.object;
  assert.match(secret.stringData.MSS_NUVE__SUPER_SERVICE__KEY, /replace/);
  assert.match(secret.stringData.MSS_OPS__TOKEN, /replace/);
  const broker = manifests().find((m) => m.object.kind === 'Secret' && m.object.metadata.name === 'rabbitmq')!.object;
  assert.match(broker.stringData.RABBITMQ_DEFAULT_PASS, /replace/);
});

test('the RabbitMQ bus example is a configuration the platform accepts, naming the broker\'s Service', () => {
  const text = readFileSync(`${DIR}/rabbitmq.yaml`, 'utf8');
  const env = Object.fromEntries([...text.matchAll(/(MSS_BUS__\w+): (\S+)/g)].map((m) => [m[1]!, m[2]!]));
  const { bus } = loadConfig({ env });
  assert.equal(bus.driver, 'rabbitmq');
  const service = manifests().find((m) => m.file === 'rabbitmq.yaml' && m.object.kind === 'Service')!.object;
  assert.equal(new URL(bus.amqpUrl).hostname, service.metadata.name);
  assert.equal(Number(new URL(bus.amqpUrl).port), service.spec.ports[0].port);
});

test('gateways and agents get the ops token (for /metrics and the preStop drain) and no other secret', () => {
  const secretName = manifests().find((m) => m.object.kind === 'Secret')!.object.metadata.name;
  for (const name of ['gateway', 'agent']) {
    const c = container(byName(name));
    const fromSecret = c.env.filter((e: any) => e.valueFrom?.secretKeyRef);
    assert.deepEqual(
      fromSecret.map((e: any) => [e.name, e.valueFrom.secretKeyRef.name, e.valueFrom.secretKeyRef.key]),
      [['MSS_OPS__TOKEN', secretName, 'MSS_OPS__TOKEN']],
      name,
    );
    assert.ok(!c.envFrom.some((e: any) => e.secretRef), `${name} does not load the whole Secret`);
  }
});
