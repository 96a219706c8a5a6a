import { Type, type Static, type TSchema } from 'typebox'
import { readFileSync } from 'node:fs'
import { Value } from 'typebox/value'
import { MAX_TTL } from './segments/lease.js'

const Bytes = (description: string, def: string) =>
  Type.String({ pattern: '^[0-9]+([KMGT]i?B?)?$', default: def, description })

/** The environment the service reads, by variable name. Every value arrives as a string and is checked here once. */
export const ConfigSchema = Type.Object({
  TENSORSHM_HOST: Type.String({ minLength: 1, default: '127.0.0.1', description: 'Address to listen on.' }),
  TENSORSHM_PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 8000, description: 'TCP port; 0 picks a free one.' }),
  TENSORSHM_LOG_LEVEL: Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)), { default: 'info', description: 'pino log level.' }),
  TENSORSHM_SEGMENT_PREFIX: Type.String({ pattern: '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$', default: 'nos_psm_', description: 'Segment names are this prefix and 16 hex digits.' }),
  TENSORSHM_SEGMENT_MODE: Type.String({ pattern: '^0?[0-7]{3}$', default: '0600', description: 'Octal permission bits set with fchmod on every segment; must keep owner read and write.' }),
  TENSORSHM_SEGMENT_OWNER: Type.Optional(Type.String({ pattern: '^[0-9]+:[0-9]+$', description: '`uid:gid` given to every segment with fchown (needs CAP_CHOWN unless it is the service\'s own).' })),
  TENSORSHM_MAX_SEGMENT_BYTES: Bytes('Largest tensor one segment may hold (bytes; K/M/G/T suffixes are powers of 1024).', '4GiB'),
  TENSORSHM_KEEP_ON_SHUTDOWN: Type.Boolean({ default: false, description: 'Keep segments on SIGTERM/SIGINT instead of releasing them; a restart picks them up again.' }),
  TENSORSHM_BODY_LIMIT: Bytes('Largest JSON or pickle request body.', '1MiB'),
  TENSORSHM_MAX_DICT_KEYS: Type.Integer({ minimum: 1, default: 1024, description: 'Most keys in one dict of a descriptor dict.' }),
  TENSORSHM_MAX_LIST_LENGTH: Type.Integer({ minimum: 1, default: 4096, description: 'Longest list in a descriptor dict.' }),
  TENSORSHM_MAX_DEPTH: Type.Integer({ minimum: 1, maximum: 256, default: 32, description: 'Deepest nesting of lists and dicts in a descriptor dict.' }),
  TENSORSHM_DEFAULT_TTL: Type.Integer({ minimum: 0, maximum: MAX_TTL, default: 600, description: 'Lease in seconds for segments created without `ttl_seconds`; 0 means no expiry.' }),
  TENSORSHM_SWEEP_INTERVAL: Type.Number({ minimum: 0.05, maximum: 3600, default: 5, description: 'Seconds between sweeps that reclaim expired segments and drop vanished ones.' }),
  TENSORSHM_MAX_ALLOCATION_RATE: Type.Number({ exclusiveMinimum: 0, default: 10, description: 'Allocations per second above which a warning is logged and counted (NOS\'s threshold).' }),
  TENSORSHM_ALLOCATION_RATE_WINDOW: Type.Number({ minimum: 1, maximum: 3600, default: 10, description: 'Seconds the allocation rate is averaged over.' }),
  TENSORSHM_MAX_TOTAL_BYTES: Bytes('Most bytes this instance holds in segments at once; 0 means only /dev/shm\'s size limits it.', '0'),
  TENSORSHM_MAX_SEGMENTS_PER_NAMESPACE: Type.Integer({ minimum: 1, default: 1024, description: 'Most segments one namespace may hold.' }),
  TENSORSHM_MAX_SEGMENTS: Type.Integer({ minimum: 1, default: 65536, description: 'Most segments this instance holds at once (each costs an inode and at least a page, whatever its size).' }),
  TENSORSHM_MAX_DECODE_BYTES: Bytes('Most tensor bytes one /v1/decode answer may carry, a segment named k times counting k times (K/M/G/T suffixes are powers of 1024); past it, 400 TSHM_LIMIT_EXCEEDED before anything is sent.', '4GiB'),
  TENSORSHM_MAX_DESCRIPTORS: Type.Integer({ minimum: 1, default: 4096, description: 'Most descriptors one /v1/decode request may reference, all keys, lists and nested pickles together.' }),
  TENSORSHM_MAX_OPEN_SEGMENTS: Type.Integer({ minimum: 1, default: 4096, description: 'Most segment files open for transfers and decodes at once (capped at half the process\'s open-file limit); past it, requests get 503 and Retry-After.' }),
  TENSORSHM_MAX_CONNECTIONS: Type.Integer({ minimum: 1, default: 1024, description: 'Most HTTP connections open at once (capped at a quarter of the process\'s open-file limit); further ones are closed on arrival.' }),
  TENSORSHM_IDLE_TIMEOUT: Type.Number({ minimum: 0.1, maximum: 86400, default: 30, description: 'Seconds a connection may stay silent (nothing received or sent: a stalled upload or download, or an idle keep-alive between requests) before it is closed.' }),
  TENSORSHM_REQUEST_TIMEOUT: Type.Number({ minimum: 0.1, maximum: 86400, default: 300, description: 'Seconds a client has to send a whole request, headers and body.' }),
  TENSORSHM_HEADERS_TIMEOUT: Type.Number({ minimum: 0.1, maximum: 86400, default: 10, description: 'Seconds a client has to send a request\'s headers (a connection that trickles them in holds a slot of TENSORSHM_MAX_CONNECTIONS); at most TENSORSHM_REQUEST_TIMEOUT.' }),
  TENSORSHM_POOL_BYTES: Bytes('Bytes of released segments kept (renamed away, zeroed) for reuse by the same client with the same size; 0 turns recycling off.', '256MiB'),
  TENSORSHM_POOL_IDLE: Type.Number({ minimum: 0, maximum: 86400, default: 60, description: 'Seconds a kept segment waits for reuse before it is unlinked.' }),
  TENSORSHM_RESERVE: Type.Boolean({ default: true, description: 'Back every segment\'s pages at creation (posix_fallocate), so that a full /dev/shm is a 507 here and not a SIGBUS in a client.' }),
  TENSORSHM_API_KEYS: Type.Optional(Type.String({ description: 'Comma-separated bearer keys (at least 16 characters each); when set, every /v1 route needs `Authorization: Bearer <key>`.' })),
  TENSORSHM_API_KEYS_FILE: Type.Optional(Type.String({ minLength: 1, description: 'A file with one key per line (blank lines and # comments ignored), read at start; adds to TENSORSHM_API_KEYS.' })),
  TENSORSHM_ALLOW_INSECURE_BIND: Type.Boolean({ default: false, description: 'Listen on a non-loopback address without API keys. Anyone who reaches the port can then read and write every tensor.' }),
  TENSORSHM_AUTH_METRICS: Type.Boolean({ default: false, description: 'Require a key for /metrics too (Prometheus then needs `authorization` in its scrape config).' }),
  TENSORSHM_AUTH_DOCS: Type.Boolean({ default: false, description: 'Require a key for /docs and /openapi.json too.' }),
  TENSORSHM_RATE_LIMIT: Type.Integer({ minimum: 0, default: 0, description: 'Requests per second per key (per client address without keys) on /v1 routes, answered with 429 and Retry-After past it; 0: no limit.' }),
  TENSORSHM_MAX_EVENT_LOOP_DELAY: Type.Integer({ minimum: 0, default: 1000, description: 'Milliseconds of event-loop delay past which requests are shed with 503 and Retry-After (liveness excepted); 0: never.' }),
  TENSORSHM_SOCKET: Type.Optional(Type.String({ pattern: '^/', maxLength: 107, description: 'Also listen on a Unix domain socket at this absolute path (at most 107 bytes): callers there are identified by the kernel (SO_PEERCRED) as `uid:<n>` and own their segments. Its directory must be writable by nobody but its owner (root or the service\'s uid) unless sticky.' })),
  TENSORSHM_SOCKET_MODE: Type.String({ pattern: '^0?[0-7]{3}$', default: '0660', description: 'Permission bits of the socket (who may connect); must keep owner read and write.' }),
  TENSORSHM_SOCKET_GROUP: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$', description: 'Group (a name or a gid) given to the socket, so that its members may connect with TENSORSHM_SOCKET_MODE 0660; default: the service\'s own.' })),
  TENSORSHM_TCP: Type.Boolean({ default: true, description: 'Listen on TENSORSHM_HOST:TENSORSHM_PORT too. Set to false (with TENSORSHM_SOCKET) so that only the kernel-authenticated socket serves requests.' }),
  TENSORSHM_MAX_BOUND_PROCESSES: Type.Integer({ minimum: 1, default: 1024, description: 'Most processes watched for release_on_exit at once (each holds a pidfd; capped at an eighth of the open-file limit); past it, such creates answer 503 TSHM_BUSY with Retry-After.' }),
  TENSORSHM_ADMIN_UIDS: Type.Optional(Type.String({ pattern: '^[0-9]+(,[0-9]+)*$', description: 'Comma-separated uids that, on the Unix socket, see and release every namespace (as uid 0 always does).' })),
  TENSORSHM_STATE_DIR: Type.Optional(Type.String({ pattern: '^/', description: 'Where the journal lives (an absolute path); default `/dev/shm/.tensorshm-<uid>/<prefix>`, on the tmpfs with the segments. It must belong to the service\'s uid and be writable by nobody else, and so must every directory above it (unless sticky). One instance per directory.' }))
})

export type RawConfig = Static<typeof ConfigSchema>

export interface Config {
  host: string
  port: number
  logLevel: string
  segmentPrefix: string
  segmentMode: number
  segmentOwner: { uid: number, gid: number } | undefined
  maxSegmentBytes: number
  keepOnShutdown: boolean
  bodyLimit: number
  maxDictKeys: number
  maxListLength: number
  maxDepth: number
  defaultTtl: number
  sweepIntervalMs: number
  maxAllocationRate: number
  allocationRateWindowMs: number
  maxTotalBytes: number
  maxSegmentsPerNamespace: number
  maxSegments: number
  maxDescriptors: number
  maxDecodeBytes: number
  maxOpenSegments: number
  maxConnections: number
  idleTimeoutMs: number
  requestTimeoutMs: number
  headersTimeoutMs: number
  reserve: boolean
  poolBytes: number
  poolIdleMs: number
  stateDir: string
  apiKeys: string[]
  allowInsecureBind: boolean
  authMetrics: boolean
  authDocs: boolean
  rateLimit: number
  maxEventLoopDelay: number
  /** The Unix socket to listen on, its mode and group; undefined: TCP only. */
  socket: { path: string, mode: number, group: number | undefined } | undefined
  /** Whether TCP listens (false only with a socket). */
  tcp: boolean
  adminUids: number[]
  maxBoundProcesses: number
}

/** A configuration value that cannot be used; the message names the variable. */
export class ConfigError extends Error {
  constructor (readonly variable: string, detail: string) {
    super(`${variable}: ${detail}`)
    this.name = 'ConfigError'
  }
}

const multipliers: Record<string, number> = { K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 }

export function parseBytes (variable: string, text: string): number {
  const m = /^([0-9]+)(?:([KMGT])i?B?)?$/.exec(text)
  if (m === null) throw new ConfigError(variable, `"${text}" is not a byte size such as 1048576 or 1MiB`)
  const n = Number(m[1]) * (m[2] === undefined ? 1 : multipliers[m[2]] ?? 1)
  if (!Number.isSafeInteger(n)) throw new ConfigError(variable, `"${text}" is too large`)
  return n
}

/** Strings to schema types, strictly: "1.5" is not an integer and "yes" is not a boolean. */
function convert (variable: string, schema: TSchema, text: string): unknown {
  const type = (schema as { type?: string }).type
  if (type === 'integer') {
    if (!/^-?[0-9]+$/.test(text.trim())) throw new ConfigError(variable, `"${text}" is not an integer`)
    return Number(text)
  }
  if (type === 'number') {
    const n = Number(text)
    if (text.trim() === '' || !Number.isFinite(n)) throw new ConfigError(variable, `"${text}" is not a number`)
    return n
  }
  if (type === 'boolean') {
    const v = text.trim().toLowerCase()
    if (v === 'true' || v === '1') return true
    if (v === 'false' || v === '0') return false
    throw new ConfigError(variable, `"${text}" is not a boolean (true, false, 1 or 0)`)
  }
  return text
}

export function readRawConfig (env: NodeJS.ProcessEnv): RawConfig {
  const raw: Record<string, unknown> = {}
  for (const [name, schema] of Object.entries(ConfigSchema.properties)) {
    const text = env[name]
    if (text !== undefined && text !== '') raw[name] = convert(name, schema, text)
  }
  const withDefaults = Value.Default(ConfigSchema, raw)
  const first = Value.Errors(ConfigSchema, withDefaults)[0]
  if (first !== undefined) {
    const variable = first.instancePath.replace(/^\//, '') || 'configuration'
    throw new ConfigError(variable, `"${String(raw[variable])}" ${first.message}`)
  }
  return withDefaults as RawConfig
}

const KEY = /^[A-Za-z0-9._~+/-]{16,512}=*$/

function readKeys (raw: RawConfig): string[] {
  const keys: Array<[string, string]> = (raw.TENSORSHM_API_KEYS ?? '').split(',').map((k) => k.trim()).filter((k) => k !== '').map((k) => ['TENSORSHM_API_KEYS', k])
  const file = raw.TENSORSHM_API_KEYS_FILE
  if (file !== undefined) {
    let text: string
    try {
      text = readFileSync(file, 'utf8')
    } catch (err) {
      throw new ConfigError('TENSORSHM_API_KEYS_FILE', `cannot read the file (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
    }
    for (const line of text.split('\n')) {
      const k = line.trim()
      if (k !== '' && !k.startsWith('#')) keys.push(['TENSORSHM_API_KEYS_FILE', k])
    }
    if (keys.every(([v]) => v !== 'TENSORSHM_API_KEYS_FILE')) throw new ConfigError('TENSORSHM_API_KEYS_FILE', 'the file holds no key')
  }
  // Never echo a key: the message names the variable and the rule only.
  for (const [variable, k] of keys) {
    if (!KEY.test(k)) throw new ConfigError(variable, 'every key must be 16 to 512 characters of A-Z a-z 0-9 . _ ~ + / - (base64 and hex keys qualify)')
  }
  return [...new Set(keys.map(([, k]) => k))]
}

/** 127.0.0.0/8, ::1 and localhost; anything else, names included, counts as reachable from outside. */
export function isLoopback (host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '')
  return h === 'localhost' || h === '::1' || /^127(\.[0-9]{1,3}){3}$/.test(h) || /^::ffff:127(\.[0-9]{1,3}){3}$/.test(h)
}

/**
 * On the tmpfs with the segments, so that the journal lives exactly as long as they do (a reboot, a new IPC
 * namespace), in a directory per uid so that instances under different users never share one.
 */
export const defaultStateDir = (prefix: string, uid = process.geteuid?.() ?? 0): string => `/dev/shm/.tensorshm-${uid}/${prefix}`

/** Validates the environment once, at start; a bad value stops the start with a message that names it. */
export function loadConfig (env: NodeJS.ProcessEnv = process.env): Config {
  const raw = readRawConfig(env)
  const segmentMode = parseInt(raw.TENSORSHM_SEGMENT_MODE, 8)
  if ((segmentMode & 0o600) !== 0o600) {
    throw new ConfigError('TENSORSHM_SEGMENT_MODE', `"${raw.TENSORSHM_SEGMENT_MODE}" must keep owner read and write (0600)`)
  }
  let segmentOwner: Config['segmentOwner']
  if (raw.TENSORSHM_SEGMENT_OWNER !== undefined) {
    const [uid, gid] = raw.TENSORSHM_SEGMENT_OWNER.split(':').map(Number) as [number, number]
    if (uid > 0xfffffffe || gid > 0xfffffffe) throw new ConfigError('TENSORSHM_SEGMENT_OWNER', 'uid and gid must be below 4294967295')
    segmentOwner = { uid, gid }
  }
  const apiKeys = readKeys(raw)
  if (!isLoopback(raw.TENSORSHM_HOST) && !raw.TENSORSHM_ALLOW_INSECURE_BIND && apiKeys.length === 0) {
    throw new ConfigError('TENSORSHM_HOST', `refusing to listen on ${raw.TENSORSHM_HOST} without authentication: set TENSORSHM_API_KEYS or TENSORSHM_API_KEYS_FILE (or, knowing that anyone who reaches the port can then read and write every tensor, TENSORSHM_ALLOW_INSECURE_BIND=true)`)
  }
  const socket = readSocket(raw)
  if (!raw.TENSORSHM_TCP && socket === undefined) throw new ConfigError('TENSORSHM_TCP', 'false needs TENSORSHM_SOCKET: the service would not listen at all')
  const adminUids = (raw.TENSORSHM_ADMIN_UIDS ?? '').split(',').filter((u) => u !== '').map(Number)
  if (adminUids.some((u) => u > 0xfffffffe)) throw new ConfigError('TENSORSHM_ADMIN_UIDS', 'uids must be below 4294967295')
  const maxSegmentBytes = parseBytes('TENSORSHM_MAX_SEGMENT_BYTES', raw.TENSORSHM_MAX_SEGMENT_BYTES)
  if (maxSegmentBytes < 1) throw new ConfigError('TENSORSHM_MAX_SEGMENT_BYTES', 'must be at least 1')
  return {
    host: raw.TENSORSHM_HOST,
    port: raw.TENSORSHM_PORT,
    logLevel: raw.TENSORSHM_LOG_LEVEL,
    segmentPrefix: raw.TENSORSHM_SEGMENT_PREFIX,
    segmentMode,
    segmentOwner,
    maxSegmentBytes,
    keepOnShutdown: raw.TENSORSHM_KEEP_ON_SHUTDOWN,
    bodyLimit: parseBytes('TENSORSHM_BODY_LIMIT', raw.TENSORSHM_BODY_LIMIT),
    maxDictKeys: raw.TENSORSHM_MAX_DICT_KEYS,
    maxListLength: raw.TENSORSHM_MAX_LIST_LENGTH,
    maxDepth: raw.TENSORSHM_MAX_DEPTH,
    defaultTtl: raw.TENSORSHM_DEFAULT_TTL,
    sweepIntervalMs: raw.TENSORSHM_SWEEP_INTERVAL * 1000,
    maxAllocationRate: raw.TENSORSHM_MAX_ALLOCATION_RATE,
    allocationRateWindowMs: raw.TENSORSHM_ALLOCATION_RATE_WINDOW * 1000,
    maxTotalBytes: parseBytes('TENSORSHM_MAX_TOTAL_BYTES', raw.TENSORSHM_MAX_TOTAL_BYTES),
    maxSegmentsPerNamespace: raw.TENSORSHM_MAX_SEGMENTS_PER_NAMESPACE,
    maxSegments: raw.TENSORSHM_MAX_SEGMENTS,
    maxDescriptors: raw.TENSORSHM_MAX_DESCRIPTORS,
    maxDecodeBytes: parseBytes('TENSORSHM_MAX_DECODE_BYTES', raw.TENSORSHM_MAX_DECODE_BYTES),
    maxOpenSegments: raw.TENSORSHM_MAX_OPEN_SEGMENTS,
    maxConnections: raw.TENSORSHM_MAX_CONNECTIONS,
    idleTimeoutMs: raw.TENSORSHM_IDLE_TIMEOUT * 1000,
    requestTimeoutMs: raw.TENSORSHM_REQUEST_TIMEOUT * 1000,
    headersTimeoutMs: Math.min(raw.TENSORSHM_HEADERS_TIMEOUT, raw.TENSORSHM_REQUEST_TIMEOUT) * 1000,
    reserve: raw.TENSORSHM_RESERVE,
    poolBytes: parseBytes('TENSORSHM_POOL_BYTES', raw.TENSORSHM_POOL_BYTES),
    poolIdleMs: raw.TENSORSHM_POOL_IDLE * 1000,
    stateDir: raw.TENSORSHM_STATE_DIR ?? defaultStateDir(raw.TENSORSHM_SEGMENT_PREFIX),
    apiKeys,
    allowInsecureBind: raw.TENSORSHM_ALLOW_INSECURE_BIND,
    authMetrics: raw.TENSORSHM_AUTH_METRICS,
    authDocs: raw.TENSORSHM_AUTH_DOCS,
    rateLimit: raw.TENSORSHM_RATE_LIMIT,
    maxEventLoopDelay: raw.TENSORSHM_MAX_EVENT_LOOP_DELAY,
    socket,
    tcp: raw.TENSORSHM_TCP,
    adminUids,
    maxBoundProcesses: raw.TENSORSHM_MAX_BOUND_PROCESSES
  }
}

function readSocket (raw: RawConfig): Config['socket'] {
  const path = raw.TENSORSHM_SOCKET
  const mode = parseInt(raw.TENSORSHM_SOCKET_MODE, 8)
  if ((mode & 0o600) !== 0o600) throw new ConfigError('TENSORSHM_SOCKET_MODE', `"${raw.TENSORSHM_SOCKET_MODE}" must keep owner read and write (0600)`)
  const group = readGroup(raw.TENSORSHM_SOCKET_GROUP)
  if (path === undefined) return undefined
  // sun_path holds 108 bytes with the NUL; a longer path would be cut, and the socket made somewhere else.
  if (Buffer.byteLength(path) > 107) throw new ConfigError('TENSORSHM_SOCKET', 'the path is longer than the 107 bytes a Unix socket address holds')
  if (path.endsWith('/') || path.split('/').some((c) => c === '..' || c === '.')) throw new ConfigError('TENSORSHM_SOCKET', `"${path}" must name a file by a plain absolute path (no trailing slash, no . or ..)`)
  return { path, mode, group }
}

/** A gid as given, or a group name looked up in /etc/group (once, at start). */
function readGroup (group: string | undefined): number | undefined {
  if (group === undefined) return undefined
  if (/^[0-9]+$/.test(group)) {
    const gid = Number(group)
    if (gid > 0xfffffffe) throw new ConfigError('TENSORSHM_SOCKET_GROUP', 'a gid must be below 4294967295')
    return gid
  }
  let text = ''
  try { text = readFileSync('/etc/group', 'utf8') } catch {}
  const line = text.split('\n').find((l) => l.split(':')[0] === group)
  const gid = Number(line?.split(':')[2])
  if (line === undefined || !Number.isInteger(gid)) throw new ConfigError('TENSORSHM_SOCKET_GROUP', `no group "${group}" in /etc/group`)
  return gid
}
