import fp from 'fastify-plugin'
import { LogController, type FastifyInstance, type FastifyServerOptions } from 'fastify'
import type { ServerOptions } from 'node:http'
import type { DestinationStream } from 'pino'
import { openFileLimit } from '../native/shm.js'
import type { Config } from './config.js'
import { formatSchemaErrors } from './http/schema-errors.js'
import { timeouts } from './http/timeouts.js'
import localSocket from './plugins/app/local-socket.js'
import config from './plugins/app/settings.js'
import errors, { sendClientError, sendError } from './plugins/app/error-handler.js'
import jsonBody from './plugins/app/json-body.js'
import segments from './plugins/app/segment-service.js'
import swagger from './plugins/external/swagger.js'
import health from '../routes/health.js'
import metricsRoutes from '../routes/prometheus.js'
import v1 from '../routes/v1.js'
import auth from './plugins/app/auth.js'
import metrics from './plugins/app/instrumentation.js'
import loadShedding from './plugins/app/load-shedding.js'

export interface AppOptions { config: Config }

/** A quarter of the process's descriptors at most: segment files take up to half, the rest is the runtime's. */
function maxConnections (configured: number): number {
  const limit = openFileLimit()
  return Math.max(1, Math.min(configured, limit === undefined ? Infinity : Math.floor(limit / 4)))
}

/** Server options that belong with the app: the tests build the same instance that production runs. */
export function serverOptions (config: Config, logStream?: DestinationStream): FastifyServerOptions & { http: ServerOptions } {
  return {
    logger: logStream === undefined ? { level: config.logLevel } : { level: config.logLevel, stream: logStream },
    // One line per request, written by the instrumentation plugin, instead of Fastify's two.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: config.bodyLimit,
    // Requests during a close are answered by the segment-service plugin, as TSHM_SHUTTING_DOWN.
    return503OnClosing: false,
    // A silent connection (a stalled upload, a download nobody reads) is closed: it would pin an fd and the
    // pages of a released segment; a kept-alive connection between requests is silent too. A request must arrive
    // whole in time, however slowly it trickles. Node checks request deadlines on an interval (30 s unless told),
    // set often enough to hold the one configured. The Unix socket's server keeps the same (src/http/timeouts.ts).
    ...timeouts(config),
    // Over-long segment names reach the handler, which answers 400 naming the field, not a bare 414.
    routerOptions: { maxParamLength: 4096 },
    schemaErrorFormatter: formatSchemaErrors,
    // Malformed URLs and absurdly long names never reach a route; they still answer in this API's format.
    frameworkErrors: sendError,
    // Neither does what the HTTP parser refuses (a bad request line, oversized headers, a timeout).
    clientErrorHandler: sendClientError,
    ajv: {
      // A dim of "3" or true is a client bug to report, not a value to coerce; unknown fields are refused, not dropped.
      customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: true, allErrors: false }
    }
  }
}

/** The whole service as a plugin. It never listens: server.ts does, and the tests inject. */
async function app (fastify: FastifyInstance, opts: AppOptions): Promise<void> {
  // JSON and the types each route declares; text/plain is not an encoding of anything this API reads.
  fastify.removeContentTypeParser('text/plain')
  fastify.server.maxConnections = maxConnections(opts.config.maxConnections)
  await fastify.register(config, { config: opts.config })
  await fastify.register(errors)
  await fastify.register(jsonBody)
  await fastify.register(loadShedding)
  await fastify.register(auth)
  await fastify.register(segments)
  await fastify.register(localSocket)
  // Before every route, the documentation's included: it gives each route its metrics and log hook.
  await fastify.register(metrics)
  await fastify.register(swagger)
  await fastify.register(health)
  await fastify.register(metricsRoutes)
  await fastify.register(v1, { prefix: '/v1' })
}

export default fp(app, { name: 'tensorshm' })
