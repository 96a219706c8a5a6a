// Checks everything under deploy/ without a cluster, a Grafana or a running Prometheus:
// - Kubernetes manifests: kubernetes-models' bundled validators (ajv, compiled from the Kubernetes OpenAPI schema:
//   required fields, types, enums, formats), plus a strict pass that rejects unknown fields: each document is
//   type-checked as an object literal against the same package's TypeScript interfaces, whose excess-property
//   check fails on any field the schema does not define. Then the DaemonSet's security properties.
// - Prometheus: promtool check config / check rules / test rules, the dashboard's PromQL through promtool, and the
//   commented kubernetes_sd variant's relabelling against the DaemonSet's annotations.
// - Grafana: the dashboard's structure (valid JSON, unique ids, grid positions, datasource input, variables).
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Histogram } from 'prom-client'
import ts from 'typescript'
import { parseAllDocuments, parse as parseYaml, stringify as stringifyYaml } from 'yaml'
import type { IDaemonSet } from 'kubernetes-models/apps/v1/DaemonSet'
import type { IService } from 'kubernetes-models/v1/Service'
import type { INamespace } from 'kubernetes-models/v1/Namespace'
import type { ISecret } from 'kubernetes-models/v1/Secret'
import type { IPod } from 'kubernetes-models/v1/Pod'

import { build } from './helpers/build.js'
import { root } from './helpers/server.js'

const k8sDir = path.join(root, 'deploy', 'kubernetes')
const promDir = path.join(root, 'deploy', 'prometheus')
const dashboardFile = path.join(root, 'deploy', 'grafana', 'tensorshm-dashboard.json')
const rulesFile = path.join(promDir, 'rules', 'tensorshm.rules.yml')

type Test = import('tap').Test
type Obj = Record<string, unknown>
interface Manifest { label: string, file: string, doc: Obj }

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v)

// ---------------------------------------------------------------------------------------------------------------
// Kubernetes manifests

const KUSTOMIZE_API = 'kustomize.config.k8s.io/v1beta1'

function loadManifests (): Manifest[] {
  const out: Manifest[] = []
  for (const file of readdirSync(k8sDir).filter((f) => /\.ya?ml$/.test(f)).sort()) {
    // Kubernetes reads YAML 1.1 (sigs.k8s.io/yaml): `0660` is an octal int there and `yes` a boolean.
    const docs = parseAllDocuments(readFileSync(path.join(k8sDir, file), 'utf8'), { version: '1.1' })
    docs.forEach((d, i) => {
      if (d.errors.length > 0) throw new Error(`${file} document ${i}: ${d.errors.map((e) => e.message).join('; ')}`)
      const doc: unknown = d.toJS()
      if (doc === null || doc === undefined) return
      if (!isObj(doc)) throw new Error(`${file} document ${i} is not a mapping`)
      out.push({ label: `${file}#${i} ${String(doc.kind)} ${String((doc.metadata as Obj | undefined)?.name)}`, file, doc })
    })
  }
  return out
}

/** A TENSORSHM_* byte size as src/config.ts reads it (K/M/G/T are powers of 1024); NaN if malformed. */
function byteSize (text: string | undefined): number {
  const m = /^([0-9]+)(?:([KMGT])i?B?)?$/.exec(text ?? '')
  return m === null ? NaN : Number(m[1]) * 1024 ** (m[2] === undefined ? 0 : 'KMGT'.indexOf(m[2]) + 1)
}

/** A Kubernetes quantity in bytes (binary Ki/Mi/Gi/Ti or decimal k/M/G/T suffixes); NaN if malformed. */
function quantity (q: string | number | undefined): number {
  if (typeof q === 'number') return q
  const m = /^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(q ?? '')
  if (m === null) return NaN
  const scale: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, k: 1e3, M: 1e6, G: 1e9, T: 1e12 }
  return Number(m[1]) * (m[2] === undefined ? 1 : scale[m[2]] ?? NaN)
}

type ModelClass = new (data: unknown) => { validate: () => void }

/** kubernetes-models' runtime validator for the document's apiVersion and kind. */
async function schemaErrors (doc: Obj): Promise<string[]> {
  const { apiVersion, kind } = doc
  if (typeof apiVersion !== 'string' || typeof kind !== 'string' || !/^([a-z0-9.-]+\/)?v[0-9a-z]+$/.test(apiVersion) ||
      !/^[A-Z][A-Za-z0-9]*$/.test(kind)) {
    return [`schema: apiVersion ${String(apiVersion)} / kind ${String(kind)} is malformed`]
  }
  let Model: ModelClass | undefined
  try {
    const mod = await import(`kubernetes-models/${apiVersion}/${kind}`) as Record<string, unknown>
    Model = mod[kind] as ModelClass | undefined
  } catch {}
  if (Model === undefined) return [`schema: kubernetes-models has no schema for ${apiVersion} ${kind}`]
  try {
    new Model(doc).validate()
    return []
  } catch (err) {
    return [`schema: ${(err as Error).message}`]
  }
}

/**
 * The strict pass: every document becomes `export const manifest: I<Kind> = <the document>` in a virtual module
 * (never written to disk) and TypeScript checks them all in one program. Excess-property checking rejects any field
 * the interface (generated from the same OpenAPI schema) does not declare; required fields, literal enums and
 * types are checked too. TypeScript stops at the first error in each document.
 */
function strictErrors (docs: Obj[]): string[][] {
  const files = new Map<string, string>()
  const names: string[] = []
  docs.forEach((doc, i) => {
    const name = path.join(root, 'test', `.deploy-strict-check-${i}.ts`)
    names.push(name)
    const { apiVersion, kind } = doc
    files.set(name, `import type { I${String(kind)} as Kind } from 'kubernetes-models/${String(apiVersion)}/${String(kind)}'\n` +
      `export const manifest: Kind = ${JSON.stringify(doc, null, 2)}\n`)
  })
  const options: ts.CompilerOptions = {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    lib: ['lib.es2022.d.ts'],
    types: [],
    strict: true,
    noEmit: true,
    skipLibCheck: true
  }
  const host = ts.createCompilerHost(options)
  const { getSourceFile, fileExists, readFile } = host
  host.getSourceFile = (f, lang, ...rest) => {
    const text = files.get(path.resolve(f))
    return text === undefined ? getSourceFile.call(host, f, lang, ...rest) : ts.createSourceFile(f, text, lang)
  }
  host.fileExists = (f) => files.has(path.resolve(f)) || fileExists.call(host, f)
  host.readFile = (f) => files.get(path.resolve(f)) ?? readFile.call(host, f)
  const program = ts.createProgram(names, options, host)
  const out: string[][] = names.map(() => [])
  for (const d of ts.getPreEmitDiagnostics(program)) {
    const message = ts.flattenDiagnosticMessageText(d.messageText, '\n')
    const i = d.file === undefined ? -1 : names.indexOf(path.resolve(d.file.fileName))
    if (i < 0) {
      // A problem outside the documents (options, a missing declaration) fails every document.
      for (const o of out) o.push(`strict: ${message}`)
      continue
    }
    const line = d.start === undefined || d.file === undefined
      ? ''
      : ` (at ${d.file.text.split('\n')[d.file.getLineAndCharacterOfPosition(d.start).line]?.trim() ?? ''})`
    out[i]?.push(`strict: ${message}${line}`)
  }
  return out
}

async function validateAll (docs: Obj[]): Promise<string[][]> {
  const strict = strictErrors(docs)
  return Promise.all(docs.map(async (doc, i) => [...await schemaErrors(doc), ...(strict[i] ?? [])]))
}

const manifests = loadManifests()
const apiManifests = manifests.filter((m) => m.doc.apiVersion !== KUSTOMIZE_API)
const find = <T>(kind: string, name?: string): T => {
  const m = apiManifests.find((x) => x.doc.kind === kind && (name === undefined || (x.doc.metadata as Obj).name === name))
  if (m === undefined) throw new Error(`no ${kind} ${name ?? ''} under deploy/kubernetes`)
  return m.doc as T
}

t.test('every Kubernetes manifest validates against the schema of its kind, strictly', async (t) => {
  t.ok(apiManifests.length >= 4, 'found the manifests')
  const errors = await validateAll(apiManifests.map((m) => m.doc))
  apiManifests.forEach((m, i) => t.same(errors[i], [], m.label))
})

t.test('the validation rejects broken copies of the DaemonSet', async (t) => {
  const ds = find<IDaemonSet>('DaemonSet')
  type Edit = (d: Obj & IDaemonSet) => void
  const podSpec = (d: IDaemonSet): Obj => d.spec?.template.spec as unknown as Obj
  const container = (d: IDaemonSet): Obj => d.spec?.template.spec?.containers[0] as unknown as Obj
  const cases: Array<[string, Edit, RegExp]> = [
    ['a misspelt required field (contianers)', (d) => {
      const spec = podSpec(d)
      spec.contianers = spec.containers
      delete spec.containers
    }, /contianers/],
    ['a string where an integer is required (containerPort: "8000")', (d) => {
      ((container(d).ports as Obj[])[0] as Obj).containerPort = '8000'
    }, /containerPort/],
    ['a misspelt optional field (runAsNonRot)', (d) => {
      (container(d).securityContext as Obj).runAsNonRot = true
    }, /runAsNonRot/],
    ['a field of another kind (replicas on a DaemonSet)', (d) => {
      (d.spec as unknown as Obj).replicas = 2
    }, /replicas/],
    ['a value outside an enum (imagePullPolicy: Sometimes)', (d) => {
      container(d).imagePullPolicy = 'Sometimes'
    }, /imagePullPolicy|Sometimes/],
    ['an unknown kind', (d) => {
      (d as Obj).kind = 'DaemonSett'
    }, /DaemonSett/]
  ]
  const broken = cases.map(([, edit]) => {
    const copy = structuredClone(ds) as Obj & IDaemonSet
    edit(copy)
    return copy as Obj
  })
  const errors = await validateAll(broken)
  cases.forEach(([what, , pattern], i) => {
    const e = errors[i] ?? []
    t.ok(e.length > 0, `${what} is rejected`)
    const named = e.find((m) => pattern.test(m))
    t.ok(named, `${what}: an error names it`, { errors: e })
    t.comment(`${what}: ${named?.split('\n')[0] ?? '(none)'}`)
  })
})

t.test('the DaemonSet runs one non-root, locked-down broker per node on the node\'s IPC namespace', async (t) => {
  const ds = find<IDaemonSet>('DaemonSet')
  const pod = ds.spec?.template.spec
  if (pod === undefined) throw new Error('the DaemonSet has no pod spec')
  t.same(ds.spec?.selector.matchLabels, Object.fromEntries(Object.entries(ds.spec?.template.metadata?.labels ?? {})
    .filter(([k]) => k in (ds.spec?.selector.matchLabels ?? {}))), 'the selector matches the pod labels')
  t.equal(ds.spec?.updateStrategy?.rollingUpdate?.maxSurge, 0, 'never two brokers on one node during an update')

  t.equal(pod.hostIPC, true, 'hostIPC: shares the node\'s /dev/shm with client pods')
  t.not(pod.hostNetwork, true, 'no hostNetwork')
  t.not(pod.hostPID, true, 'no hostPID')
  t.equal(pod.enableServiceLinks, false, 'no service-link variables (TENSORSHM_PORT=tcp://…)')
  t.equal(pod.automountServiceAccountToken, false, 'no API token')

  // uid 0, for three capabilities only: socket callers' segments are chowned to them, unlinked from sticky /dev/shm.
  const psc = pod.securityContext
  t.equal(psc?.runAsUser, 0, 'pod runAsUser 0 (segments are given to their callers)')
  t.equal(psc?.fsGroup, 1000, 'pod fsGroup 1000')
  t.equal(psc?.seccompProfile?.type, 'RuntimeDefault', 'pod seccomp RuntimeDefault')

  t.equal(pod.containers.length, 1, 'one container')
  const c = pod.containers[0]
  if (c === undefined) throw new Error('no container')
  t.equal(c.image, 'tensorshm:0.1.0', 'the image built from the Dockerfile')
  const sc = c.securityContext
  t.equal(sc?.readOnlyRootFilesystem, true, 'readOnlyRootFilesystem')
  t.equal(sc?.allowPrivilegeEscalation, false, 'allowPrivilegeEscalation false')
  t.not(sc?.privileged, true, 'not privileged')
  t.ok(sc?.capabilities?.drop?.includes('ALL'), 'drops all capabilities')
  t.same([...sc?.capabilities?.add ?? []].sort(), ['CHOWN', 'DAC_OVERRIDE', 'FOWNER'], 'adds back only chown, unlink in a sticky directory and file access')
  for (const k of ['runAsUser', 'runAsGroup'] as const) t.ok(sc?.[k] === undefined, `the container keeps the pod's ${k}`)
  t.not(sc?.seccompProfile?.type, 'Unconfined', 'the container does not undo seccomp')
  t.ok(c.resources?.requests?.cpu !== undefined && c.resources.requests.memory !== undefined, 'cpu and memory requests')
  t.ok(c.resources?.limits?.memory !== undefined, 'a memory limit')

  const http = c.ports?.find((p) => p.name === 'http')
  if (http === undefined) throw new Error('no port named http')
  const port = http.containerPort
  t.same(c.ports?.map((p) => p.hostPort).filter((p) => p !== undefined), [], 'no hostPort (clients use the Service)')
  const probePort = (p: number | string | undefined): boolean => p === 'http' || p === port
  t.equal(c.livenessProbe?.httpGet?.path, '/healthz', 'liveness probe GET /healthz')
  t.ok(probePort(c.livenessProbe?.httpGet?.port), 'liveness probe on the container port')
  t.equal(c.readinessProbe?.httpGet?.path, '/readyz', 'readiness probe GET /readyz')
  t.ok(probePort(c.readinessProbe?.httpGet?.port), 'readiness probe on the container port')

  const ann = ds.spec?.template.metadata?.annotations ?? {}
  t.equal(ann['prometheus.io/scrape'], 'true', 'prometheus.io/scrape')
  t.equal(ann['prometheus.io/port'], String(port), 'prometheus.io/port is the container port')
  t.equal(ann['prometheus.io/path'], '/metrics', 'prometheus.io/path')

  const env = new Map((c.env ?? []).map((e) => [e.name, e]))
  t.equal(env.size, (c.env ?? []).length, 'no variable set twice')
  const value = (n: string): string | undefined => env.get(n)?.value
  t.equal(value('TENSORSHM_HOST'), '0.0.0.0', 'TENSORSHM_HOST=0.0.0.0')
  t.equal(value('TENSORSHM_PORT') ?? '8000', String(port), 'TENSORSHM_PORT is the container port')
  t.equal(value('TENSORSHM_SEGMENT_MODE'), '0660', 'TENSORSHM_SEGMENT_MODE=0660')
  t.equal(value('TENSORSHM_SEGMENT_OWNER'), '1000:1000', 'TCP callers\' segments go to 1000:1000 (the broker is root)')
  // The socket: in a hostPath directory only root writes, 0660 with the clients' group.
  const socket = value('TENSORSHM_SOCKET') ?? ''
  t.equal(value('TENSORSHM_SOCKET_MODE'), '0660', 'socket mode 0660')
  t.equal(value('TENSORSHM_SOCKET_GROUP'), '1000', 'socket group 1000')
  const sockMount = c.volumeMounts?.find((m) => m.mountPath === path.posix.dirname(socket))
  const sockVol = pod.volumes?.find((v) => v.name === sockMount?.name)
  t.equal(sockVol?.hostPath?.path, path.posix.dirname(socket), 'the socket lives on the node, in a directory of its own')
  const client = manifests.find((m) => m.file.startsWith('client-example'))?.doc as unknown as IPod
  const cc = client.spec?.containers[0]
  t.equal(cc?.env?.find((e) => e.name === 'TENSORSHM_URL')?.value, `unix://${socket}`, 'the example client uses the socket')
  const cm = cc?.volumeMounts?.find((m) => m.mountPath === path.posix.dirname(socket))
  t.equal(cm?.readOnly, true, 'the client mounts the socket\'s directory read-only')
  t.equal(client.spec?.volumes?.find((v) => v.name === cm?.name)?.hostPath?.path, path.posix.dirname(socket), 'the same node directory')
  t.ok(client.spec?.securityContext?.supplementalGroups?.includes(1000), 'the client is in the socket\'s group')
  t.equal(value('TENSORSHM_STATE_DIR'), '/dev/shm/.tensorshm-state', 'the journal on tmpfs with the segments')
  t.match(value('TENSORSHM_MAX_TOTAL_BYTES'), /^[0-9]+([KMGT]i?B?)?$/, 'TENSORSHM_MAX_TOTAL_BYTES is a byte size')
  // Segments are fallocated by the broker, so their pages count against its memory cgroup.
  const maxTotal = byteSize(value('TENSORSHM_MAX_TOTAL_BYTES'))
  for (const k of ['requests', 'limits'] as const) {
    const memory = quantity(c.resources?.[k]?.memory)
    t.ok(maxTotal > 0 && memory >= maxTotal + 256 * 2 ** 20, `memory ${k} (${memory}) covers TENSORSHM_MAX_TOTAL_BYTES (${maxTotal}) and the process`)
  }
  const keysFile = value('TENSORSHM_API_KEYS_FILE')
  t.equal(keysFile, '/etc/tensorshm/api-keys', 'API keys from a file (a non-loopback bind needs them)')
  t.notOk(env.has('TENSORSHM_ALLOW_INSECURE_BIND'), 'no insecure bind')
  t.notOk(env.has('TENSORSHM_API_KEYS'), 'no keys in the environment')

  // The keys file comes from the Secret whose shape secret.example.yaml shows, readable by nobody else.
  const mount = c.volumeMounts?.find((m) => m.mountPath === path.posix.dirname(keysFile ?? ''))
  t.equal(mount?.readOnly, true, 'the keys directory is mounted read-only')
  const vol = pod.volumes?.find((v) => v.name === mount?.name)
  const secret = find<ISecret>('Secret')
  t.equal(vol?.secret?.secretName, secret.metadata?.name, 'from the example Secret\'s name')
  const item = vol?.secret?.items?.find((i) => i.path === path.posix.basename(keysFile ?? ''))
  t.ok(item !== undefined && (item.key in (secret.stringData ?? {}) || item.key in (secret.data ?? {})), 'a key the Secret has')
  t.equal((vol?.secret?.defaultMode ?? 0o644) & 0o007, 0, 'the keys file is not world-readable')
  t.equal(secret.metadata?.namespace, ds.metadata?.namespace, 'the Secret lives in the DaemonSet\'s namespace')
})

t.test('the Service reaches the broker on the client\'s own node, and the namespace admits hostIPC', async (t) => {
  const ds = find<IDaemonSet>('DaemonSet')
  const svc = find<IService>('Service')
  const ns = find<INamespace>('Namespace')
  t.equal(svc.spec?.internalTrafficPolicy, 'Local', 'internalTrafficPolicy: Local')
  const labels = ds.spec?.template.metadata?.labels ?? {}
  t.ok(Object.entries(svc.spec?.selector ?? {}).every(([k, v]) => labels[k] === v), 'the selector picks the broker pods')
  const ports = ds.spec?.template.spec?.containers[0]?.ports ?? []
  for (const p of svc.spec?.ports ?? []) {
    t.ok(ports.some((cp) => cp.name === p.targetPort || cp.containerPort === p.targetPort), `port ${p.port} targets a container port`)
  }
  t.not(svc.metadata?.name, 'tensorshm', 'not named tensorshm (service links would set TENSORSHM_PORT)')
  t.equal(ns.metadata?.labels?.['pod-security.kubernetes.io/enforce'], 'privileged', 'Pod Security admits hostIPC')
  for (const m of apiManifests) {
    if (m.doc.kind === 'Namespace' || m.file.startsWith('client-example')) continue
    t.equal((m.doc.metadata as Obj).namespace, ns.metadata?.name, `${m.label} is in the tensorshm namespace`)
  }
})

t.test('kustomization.yaml lists every manifest but the examples, and only files that exist', async (t) => {
  const k = manifests.find((m) => m.doc.apiVersion === KUSTOMIZE_API)
  if (k === undefined) throw new Error('no kustomization.yaml')
  t.equal(k.file, 'kustomization.yaml', 'in kustomization.yaml')
  t.equal(k.doc.kind, 'Kustomization', 'kind Kustomization')
  const resources = k.doc.resources as string[]
  const expected = [...new Set(apiManifests.map((m) => m.file))].filter((f) => !/example/.test(f)).sort()
  t.same([...resources].sort(), expected, 'resources')
  t.notOk(resources.includes('secret.example.yaml'), 'the example Secret is not applied')
})

// ---------------------------------------------------------------------------------------------------------------
// Prometheus

const PROMTOOL_MISSING = 'promtool missing: run scripts/install-test-deps.sh'

interface Run { status: number | null, output: string, missing: boolean }
function promtool (args: string[]): Run {
  const r = spawnSync('promtool', args, { cwd: root, encoding: 'utf8', timeout: 60_000 })
  const missing = (r.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT'
  return { status: r.status, output: `${r.stdout ?? ''}${r.stderr ?? ''}`, missing }
}
function expectPromtool (t: Test, args: string[]): Run {
  const r = promtool(args)
  if (r.missing) t.fail(PROMTOOL_MISSING)
  else t.equal(r.status, 0, `promtool ${args.join(' ')}`, { output: r.output })
  return r
}

const tmp = mkdtempSync(path.join(tmpdir(), 'tensorshm-deploy-'))
t.teardown(() => rmSync(tmp, { recursive: true, force: true }))

t.test('promtool check config deploy/prometheus/prometheus.yml', async (t) => {
  const r = expectPromtool(t, ['check', 'config', path.join('deploy', 'prometheus', 'prometheus.yml')])
  if (!r.missing) t.match(r.output, /rules\/tensorshm\.rules\.yml/, 'it loads the rules file')
})

t.test('promtool check rules deploy/prometheus/rules/tensorshm.rules.yml', async (t) => {
  expectPromtool(t, ['check', 'rules', path.join('deploy', 'prometheus', 'rules', 'tensorshm.rules.yml')])
})

t.test('promtool test rules deploy/prometheus/rules/tensorshm.rules.test.yml', async (t) => {
  expectPromtool(t, ['test', 'rules', path.join('deploy', 'prometheus', 'rules', 'tensorshm.rules.test.yml')])
})

interface Rule { alert?: string, record?: string, expr: string, for?: string, labels?: Record<string, string>, annotations?: Record<string, string> }
const ruleGroups = (parseYaml(readFileSync(rulesFile, 'utf8')) as { groups: Array<{ name: string, rules: Rule[] }> }).groups
const rules = ruleGroups.flatMap((g) => g.rules)

// The metrics as the service registers them, not a list kept by hand: a new one needs a panel and may be alerted on.
const registered = (await build(t)).metrics.registry.getMetricsAsArray().filter((m) => m.name.startsWith('tensorshm_'))
const METRICS = registered.map((m) => m.name)
const HISTOGRAMS = registered.filter((m) => m instanceof Histogram).map((m) => m.name)
const KNOWN_SERIES = new Set([...METRICS, ...HISTOGRAMS.flatMap((h) => ['_bucket', '_count', '_sum'].map((s) => h + s))])
/** tensorshm_* series an expression reads (recording-rule names such as instance:tensorshm_x:rate5m excluded). */
const seriesIn = (expr: string): string[] => [...expr.matchAll(/(?<![\w:])tensorshm_\w+/g)].map((m) => m[0])

t.test('the alert rules: the required alerts, each with a severity, a summary and a description', async (t) => {
  const alerts = rules.filter((r) => r.alert !== undefined)
  const names = new Set(alerts.map((r) => r.alert))
  for (const a of ['TensorshmLeakedSegments', 'TensorshmAllocationRateExceeded', 'TensorshmShmNearlyFull',
    'TensorshmShmFull', 'TensorshmQuotaRejections', 'TensorshmDown']) t.ok(names.has(a), a)
  for (const r of alerts) {
    t.match(r.labels?.severity, /^(warning|critical)$/, `${r.alert} has a severity`)
    t.ok(r.annotations?.summary, `${r.alert} has a summary`)
    t.ok(r.annotations?.description, `${r.alert} has a description`)
  }
  t.equal(alerts.find((r) => r.alert === 'TensorshmShmFull')?.labels?.severity, 'critical', 'ShmFull is critical')
  t.equal(alerts.find((r) => r.alert === 'TensorshmDown')?.labels?.severity, 'critical', 'Down is critical')
  t.equal(alerts.find((r) => r.alert === 'TensorshmLeakedSegments')?.for, '10m', 'leaks alert after 10m')
  for (const r of rules) for (const s of seriesIn(r.expr)) t.ok(KNOWN_SERIES.has(s), `${r.alert ?? r.record} reads ${s}, a metric the service exports`)
  const tested = readFileSync(path.join(promDir, 'rules', 'tensorshm.rules.test.yml'), 'utf8')
  for (const n of names) t.match(tested, new RegExp(`alertname: ${n}\\b`), `${n} has unit tests`)
})

// The Kubernetes variant of the scrape config, commented out in prometheus.yml.
function kubernetesScrapeJob (): Obj {
  const text = readFileSync(path.join(promDir, 'prometheus.yml'), 'utf8')
  const m = /# BEGIN kubernetes_sd variant\n([\s\S]*?)\n\s*# END kubernetes_sd variant/.exec(text)
  if (m === null) throw new Error('prometheus.yml has no kubernetes_sd variant block')
  const jobs = parseYaml((m[1] ?? '').split('\n').map((l) => l.replace(/^(\s*)# ?/, '$1')).join('\n')) as Obj[]
  if (!Array.isArray(jobs) || jobs.length !== 1 || !isObj(jobs[0])) throw new Error('the variant is not one scrape job')
  return jobs[0]
}

interface Relabel { source_labels?: string[], separator?: string, regex?: string, target_label?: string, replacement?: string, action?: string }
/** Prometheus' relabelling (the replace, keep and drop actions), enough to run the variant on a pod's labels. */
function relabel (input: Record<string, string>, configs: Relabel[]): Record<string, string> | null {
  const labels = { ...input }
  for (const c of configs) {
    const value = (c.source_labels ?? []).map((l) => labels[l] ?? '').join(c.separator ?? ';')
    const re = new RegExp(`^(?:${c.regex ?? '(.*)'})$`)
    switch (c.action ?? 'replace') {
      case 'keep':
        if (!re.test(value)) return null
        break
      case 'drop':
        if (re.test(value)) return null
        break
      case 'replace': {
        const m = re.exec(value)
        if (m === null || c.target_label === undefined) break
        const v = (c.replacement ?? '$1').replace(/\$\{?(\d+)\}?/g, (_, i: string) => m[Number(i)] ?? '')
        if (v === '') delete labels[c.target_label]
        else labels[c.target_label] = v
        break
      }
      default:
        throw new Error(`relabel action ${String(c.action)} is not simulated here`)
    }
  }
  return labels
}

t.test('the kubernetes_sd variant scrapes the DaemonSet\'s pods by their annotations', async (t) => {
  const job = kubernetesScrapeJob()
  t.equal(job.job_name, 'tensorshm', 'same job name as the static variant (rules and dashboard select it)')
  const sd = (job.kubernetes_sd_configs as Obj[] | undefined)?.[0]
  t.equal(sd?.role, 'pod', 'pod role')
  const ds = find<IDaemonSet>('DaemonSet')
  t.same((sd?.namespaces as Obj | undefined)?.names, [ds.metadata?.namespace], 'the DaemonSet\'s namespace')

  const meta = (prefix: string, m: Record<string, string>): Record<string, string> =>
    Object.fromEntries(Object.entries(m).map(([k, v]) => [prefix + k.replace(/[^a-zA-Z0-9_]/g, '_'), v]))
  const port = ds.spec?.template.spec?.containers[0]?.ports?.[0]?.containerPort ?? 0
  const target = {
    __address__: `10.1.2.3:${port}`,
    __metrics_path__: '/default-path',
    ...meta('__meta_kubernetes_pod_label_', ds.spec?.template.metadata?.labels ?? {}),
    ...meta('__meta_kubernetes_pod_annotation_', ds.spec?.template.metadata?.annotations ?? {}),
    __meta_kubernetes_pod_phase: 'Running',
    __meta_kubernetes_pod_node_name: 'node-a',
    __meta_kubernetes_namespace: ds.metadata?.namespace ?? '',
    __meta_kubernetes_pod_name: 'tensorshm-x7k2p'
  }
  const configs = job.relabel_configs as Relabel[]
  const out = relabel(target, configs)
  t.ok(out !== null, 'a running broker pod is kept')
  t.equal(out?.__address__, `10.1.2.3:${port}`, 'scraped on the annotated port')
  t.equal(out?.__metrics_path__, '/metrics', 'at the annotated path')
  t.equal(out?.instance, 'node-a', 'instance is the node')
  t.equal(relabel({ ...target, __meta_kubernetes_pod_annotation_prometheus_io_scrape: 'false' }, configs), null, 'scrape: "false" is dropped')
  t.equal(relabel({ ...target, __meta_kubernetes_pod_phase: 'Pending' }, configs), null, 'a pending pod is dropped')
  t.equal(relabel({ ...target, __meta_kubernetes_pod_label_app_kubernetes_io_name: 'other' }, configs), null, 'other apps are dropped')

  // promtool checks the job as well. Debian's Prometheus is built without Kubernetes service discovery (promtool
  // answers "field kubernetes_sd_configs not found"); then a static target stands in for it and promtool still
  // checks everything else, the relabel rules included.
  const write = (j: Obj): string => {
    const file = path.join(tmp, 'prometheus-kubernetes.yml')
    writeFileSync(file, stringifyYaml({ global: { scrape_interval: '15s' }, rule_files: [rulesFile], scrape_configs: [j] }))
    return file
  }
  let r = promtool(['check', 'config', write(job)])
  if (r.missing) return t.fail(PROMTOOL_MISSING)
  if (r.status !== 0 && /field kubernetes_sd_configs not found/.test(r.output)) {
    t.comment('this promtool has no kubernetes_sd_configs: checking the job with static_configs in their place')
    const { kubernetes_sd_configs: _sd, ...rest } = job
    r = promtool(['check', 'config', write({ ...rest, static_configs: [{ targets: [`10.1.2.3:${port}`] }] })])
  }
  t.equal(r.status, 0, 'promtool check config accepts the Kubernetes variant', { output: r.output })
})

// ---------------------------------------------------------------------------------------------------------------
// Grafana

interface Target { expr?: string, datasource?: { uid?: string } }
interface Panel {
  id?: unknown
  type?: string
  title?: string
  gridPos?: { h?: unknown, w?: unknown, x?: unknown, y?: unknown }
  datasource?: { type?: string, uid?: string }
  targets?: Target[]
  panels?: Panel[]
  fieldConfig?: { defaults?: { thresholds?: { steps?: Array<{ value: number | null }> } } }
}
interface Dashboard {
  schemaVersion: number
  __inputs?: Array<{ name: string, type: string, pluginId: string }>
  panels: Panel[]
  templating: { list: Array<{ name: string, type: string, datasource?: { uid?: string }, query?: unknown, definition?: string }> }
}

const dashboard = JSON.parse(readFileSync(dashboardFile, 'utf8')) as Dashboard
const allPanels = (ps: Panel[]): Panel[] => ps.flatMap((p) => [p, ...allPanels(p.panels ?? [])])
const panels = allPanels(dashboard.panels)

/** Every `expr` anywhere in the dashboard (targets, annotations), with where it was found. */
function dashboardExprs (): Array<{ where: string, expr: string }> {
  const out: Array<{ where: string, expr: string }> = []
  const walk = (v: unknown, where: string): void => {
    if (Array.isArray(v)) v.forEach((x, i) => walk(x, `${where}[${i}]`))
    else if (isObj(v)) {
      for (const [k, x] of Object.entries(v)) {
        if (k === 'expr' && typeof x === 'string') out.push({ where, expr: x })
        else walk(x, typeof v.title === 'string' ? `${where} "${v.title}"` : `${where}.${k}`)
      }
    }
  }
  walk(dashboard, 'dashboard')
  // label_values(<selector>, label) variables: the selector must parse too.
  for (const v of dashboard.templating.list) {
    const m = /^label_values\((.+),\s*\w+\)$/.exec(v.definition ?? '')
    if (m?.[1] !== undefined) out.push({ where: `variable ${v.name}`, expr: m[1] })
  }
  return out
}

// The datasource every panel uses: the ${DS_PROMETHEUS} input that Grafana asks for on import.
const DS_INPUT = '$' + '{DS_PROMETHEUS}'
const GRAFANA_VARS: Record<string, string> = { __rate_interval: '5m', __interval: '1m', __range: '1h', instance: '.*' }
function substituteVars (expr: string): string {
  return expr.replace(/\$\{(\w+)(?::\w+)?\}|\$(\w+)/g, (whole, a?: string, b?: string) => {
    const name = a ?? b ?? ''
    const value = GRAFANA_VARS[name]
    if (value === undefined) throw new Error(`unknown dashboard variable ${whole} in ${expr}`)
    return value
  })
}

t.test('the Grafana dashboard: valid JSON, unique panel ids, grid positions, datasource input, instance variable', async (t) => {
  t.ok(dashboard.schemaVersion >= 39, 'schemaVersion 39 or later')
  t.same(dashboard.__inputs?.map((i) => [i.name, i.type, i.pluginId]), [['DS_PROMETHEUS', 'datasource', 'prometheus']], 'one datasource input')
  const ids = panels.map((p) => p.id)
  t.ok(ids.every((id) => Number.isInteger(id)), 'every panel has an integer id')
  t.equal(new Set(ids).size, ids.length, 'panel ids are unique')
  const boxes: Array<{ title: string, x: number, y: number, w: number, h: number }> = []
  for (const p of panels) {
    const g = p.gridPos
    const ok = g !== undefined && [g.h, g.w, g.x, g.y].every((n) => Number.isInteger(n) && (n as number) >= 0)
    t.ok(ok, `"${p.title}" has a gridPos`)
    if (!ok) continue
    const box = { title: p.title ?? '', x: g.x as number, y: g.y as number, w: g.w as number, h: g.h as number }
    t.ok(box.w > 0 && box.h > 0 && box.x + box.w <= 24, `"${p.title}" fits the 24-column grid`)
    const overlap = boxes.find((b) => b.x < box.x + box.w && box.x < b.x + b.w && b.y < box.y + box.h && box.y < b.y + b.h)
    t.equal(overlap, undefined, `"${p.title}" overlaps no other panel`)
    boxes.push(box)
  }
  const inst = dashboard.templating.list.find((v) => v.name === 'instance')
  t.equal(inst?.type, 'query', 'an instance query variable')
  t.equal(inst?.datasource?.uid, DS_INPUT, 'the variable uses the input datasource')
  for (const p of panels.filter((p) => p.type !== 'row')) {
    t.equal(p.datasource?.uid, DS_INPUT, `"${p.title}" uses the input datasource`)
    t.ok((p.targets ?? []).length > 0, `"${p.title}" has queries`)
    for (const q of p.targets ?? []) {
      t.equal(q.datasource?.uid ?? DS_INPUT, DS_INPUT, `"${p.title}" query datasource`)
      t.match(q.expr, /instance=~"\$instance"/, `"${p.title}" filters by $instance`)
    }
  }
})

t.test('the dashboard reads only exported metrics and covers each of them', async (t) => {
  const exprs = dashboardExprs()
  const read = new Set(exprs.flatMap((e) => seriesIn(e.expr)))
  for (const s of read) t.ok(KNOWN_SERIES.has(s), `${s} is a metric the service exports`)
  for (const m of METRICS) {
    const names = HISTOGRAMS.includes(m) ? [`${m}_bucket`] : [m]
    t.ok(names.some((n) => read.has(n)), `a panel shows ${names.join('/')}`)
  }
  // The allocation-rate panel's threshold line and the alert agree.
  const rule = rules.find((r) => r.alert === 'TensorshmAllocationRateExceeded' && /tensorshm_allocation_rate\{/.test(r.expr))
  const limit = Number(/>\s*([0-9.]+)\s*$/.exec(rule?.expr.trim() ?? '')?.[1])
  const panel = panels.find((p) => p.title === 'Allocation rate vs threshold')
  const steps = panel?.fieldConfig?.defaults?.thresholds?.steps ?? []
  t.equal(steps[steps.length - 1]?.value, limit, `the panel's threshold line is the alert's ${limit}/s`)
})

t.test('every PromQL expression in the dashboard parses (promtool check rules)', async (t) => {
  const exprs = dashboardExprs()
  t.ok(exprs.length >= 20, `found ${exprs.length} expressions`)
  const file = path.join(tmp, 'dashboard-exprs.rules.yml')
  const records = exprs.map((e, i) => ({ record: `dashboard:expr_${i}`, expr: substituteVars(e.expr), where: e.where }))
  writeFileSync(file, stringifyYaml({ groups: [{ name: 'grafana-dashboard', rules: records.map(({ record, expr }) => ({ record, expr })) }] }))
  const r = expectPromtool(t, ['check', 'rules', file])
  if (!r.missing && r.status !== 0) t.comment(records.map((x) => `${x.record}: ${x.where}: ${x.expr}`).join('\n'))
})
