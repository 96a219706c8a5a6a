/** The logging the segment services need: pino's shape, without depending on Fastify's types. */
type LogFn = (obj: object, msg?: string) => void

export interface Logger {
  debug: LogFn
  info: LogFn
  warn: LogFn
  error: LogFn
}
