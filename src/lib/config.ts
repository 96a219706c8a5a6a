import { Type, type Static, type TSchema } from 'typebox'
import { Value } from 'typebox/value'

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
  TENSORSHM_BODY_LIMIT: Bytes('Largest JSON or pickle request body.', '1MiB')
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
    bodyLimit: parseBytes('TENSORSHM_BODY_LIMIT', raw.TENSORSHM_BODY_LIMIT)
  }
}
