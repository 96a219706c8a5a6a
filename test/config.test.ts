import t from 'tap'
import { readFileSync } from 'node:fs'
import { ConfigSchema, loadConfig } from '../src/config.js'

t.test('defaults', async (t) => {
  t.same(loadConfig({}), {
    host: '127.0.0.1',
    port: 8000,
    logLevel: 'info',
    segmentPrefix: 'nos_psm_',
    segmentMode: 0o600,
    segmentOwner: undefined,
    maxSegmentBytes: 4 * 2 ** 30,
    keepOnShutdown: false,
    bodyLimit: 2 ** 20,
    maxDictKeys: 1024,
    maxListLength: 4096,
    maxDepth: 32,
    defaultTtl: 600,
    sweepIntervalMs: 5000,
    maxAllocationRate: 10,
    allocationRateWindowMs: 10000,
    maxTotalBytes: 0,
    maxSegmentsPerNamespace: 1024,
    maxSegments: 65536,
    maxDescriptors: 4096,
    maxDecodeBytes: 4 * 2 ** 30,
    maxOpenSegments: 4096,
    maxConnections: 1024,
    idleTimeoutMs: 30_000,
    requestTimeoutMs: 300_000,
    headersTimeoutMs: 10_000,
    reserve: true,
    poolBytes: 256 * 2 ** 20,
    poolIdleMs: 60_000,
    stateDir: `/dev/shm/.tensorshm-${process.geteuid?.() ?? 0}/nos_psm_`,
    apiKeys: [],
    allowInsecureBind: false,
    authMetrics: false,
    authDocs: false,
    rateLimit: 0,
    socket: undefined,
    tcp: true,
    adminUids: [],
    maxBoundProcesses: 1024,
    maxEventLoopDelay: 1000
  })
})

t.test('values are parsed strictly', async (t) => {
  const c = loadConfig({
    TENSORSHM_PORT: '0',
    TENSORSHM_SEGMENT_MODE: '0660',
    TENSORSHM_SEGMENT_OWNER: '1000:1000',
    TENSORSHM_MAX_SEGMENT_BYTES: '512MiB',
    TENSORSHM_KEEP_ON_SHUTDOWN: 'true',
    TENSORSHM_SEGMENT_PREFIX: 'my.prefix-',
    TENSORSHM_BODY_LIMIT: '4096'
  })
  t.match(c, { port: 0, segmentMode: 0o660, segmentOwner: { uid: 1000, gid: 1000 }, maxSegmentBytes: 512 * 2 ** 20, keepOnShutdown: true, segmentPrefix: 'my.prefix-', bodyLimit: 4096 })
  t.equal(loadConfig({ TENSORSHM_MAX_SEGMENT_BYTES: '2G' }).maxSegmentBytes, 2 * 2 ** 30)
  t.equal(loadConfig({ TENSORSHM_SEGMENT_MODE: '644' }).segmentMode, 0o644)
  t.equal(loadConfig({ TENSORSHM_PORT: '' }).port, 8000, 'an empty variable means the default')
})

t.test('a bad value stops the start with a message that names the variable', async (t) => {
  const bad: Array<[string, string]> = [
    ['TENSORSHM_PORT', 'http'],
    ['TENSORSHM_PORT', '70000'],
    ['TENSORSHM_PORT', '80.5'],
    ['TENSORSHM_SEGMENT_MODE', '0999'],
    ['TENSORSHM_SEGMENT_MODE', 'rw-------'],
    ['TENSORSHM_SEGMENT_MODE', '0400'],
    ['TENSORSHM_SEGMENT_MODE', '04755'],
    ['TENSORSHM_SEGMENT_OWNER', 'root'],
    ['TENSORSHM_SEGMENT_OWNER', '1000:'],
    ['TENSORSHM_SEGMENT_OWNER', '4294967295:0'],
    ['TENSORSHM_SEGMENT_PREFIX', 'a/b'],
    ['TENSORSHM_SEGMENT_PREFIX', '.hidden'],
    ['TENSORSHM_SEGMENT_PREFIX', 'x'.repeat(65)],
    ['TENSORSHM_MAX_SEGMENT_BYTES', '-1'],
    ['TENSORSHM_MAX_SEGMENT_BYTES', '0'],
    ['TENSORSHM_MAX_SEGMENT_BYTES', '1.5GiB'],
    ['TENSORSHM_MAX_SEGMENT_BYTES', '99999999999T'],
    ['TENSORSHM_KEEP_ON_SHUTDOWN', 'yes'],
    ['TENSORSHM_LOG_LEVEL', 'loud'],
    ['TENSORSHM_BODY_LIMIT', 'lots'],
    ['TENSORSHM_DEFAULT_TTL', '-5'],
    ['TENSORSHM_DEFAULT_TTL', '31536001'],
    ['TENSORSHM_SWEEP_INTERVAL', '0'],
    ['TENSORSHM_MAX_ALLOCATION_RATE', '0'],
    ['TENSORSHM_MAX_TOTAL_BYTES', 'unlimited'],
    ['TENSORSHM_MAX_SEGMENTS_PER_NAMESPACE', '0'],
    ['TENSORSHM_RESERVE', 'maybe'],
    ['TENSORSHM_MAX_DEPTH', '1000'],
    ['TENSORSHM_API_KEYS', 'short'],
    ['TENSORSHM_API_KEYS', 'a key with spaces in it, long enough'],
    ['TENSORSHM_API_KEYS_FILE', '/nonexistent/keys'],
    ['TENSORSHM_RATE_LIMIT', '-1'],
    ['TENSORSHM_HOST', '0.0.0.0'],
    ['TENSORSHM_HOST', '10.1.2.3'],
    ['TENSORSHM_HOST', 'example.internal'],
    ['TENSORSHM_STATE_DIR', 'relative/state'],
    ['TENSORSHM_MAX_SEGMENTS', '0'],
    ['TENSORSHM_MAX_DESCRIPTORS', '0'],
    ['TENSORSHM_MAX_OPEN_SEGMENTS', '-1'],
    ['TENSORSHM_IDLE_TIMEOUT', '0'],
    ['TENSORSHM_REQUEST_TIMEOUT', 'never'],
    ['TENSORSHM_SOCKET', 'relative.sock'],
    ['TENSORSHM_SOCKET', `/run/${'x'.repeat(110)}`],
    ['TENSORSHM_SOCKET', '/run/a/../b.sock'],
    ['TENSORSHM_SOCKET_MODE', '0066'],
    ['TENSORSHM_SOCKET_GROUP', 'no-such-group-here'],
    ['TENSORSHM_ADMIN_UIDS', '0,x'],
    ['TENSORSHM_TCP', 'false']
  ]
  for (const [variable, value] of bad) {
    t.throws(() => loadConfig({ [variable]: value }), { name: 'ConfigError', variable, message: new RegExp(`^${variable}: `) }, `${variable}=${value}`)
  }
})

t.test('the README\'s configuration table lists every variable with its default', async (t) => {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8')
  for (const [name, schema] of Object.entries(ConfigSchema.properties)) {
    const def = (schema as { default?: unknown }).default
    const row = `| \`${name}\` | ${def === undefined ? 'unset' : `\`${String(def)}\``} |`
    t.ok(readme.includes(row), row)
  }
  const documented = [...readme.matchAll(/^\| `(TENSORSHM_[A-Z_]+)` \|/gm)].map((m) => m[1])
  t.same(documented.sort(), Object.keys(ConfigSchema.properties).sort(), 'and nothing else')
})
