// Baseline for benchmark 1: a bare Fastify 5 app in its own process that answers the service's request pair with
// the same shapes and nothing behind them. POST /v1/segments answers a descriptor-shaped JSON (201) for each
// tensor of the body; DELETE /v1/segments/:name answers 204. No plugins and no schemas. The logger is set as the
// service's default: pino at info on stdout through the same 4 KiB buffer (src/log-destination.ts), with Fastify's
// own request logging (two lines per request, where the service writes one).
import { randomBytes } from 'node:crypto'
import Fastify from 'fastify'
import { logDestination } from '../../dist/src/log-destination.js'

const port = Number(process.argv[2])
const app = Fastify({ logger: { level: 'info', stream: logDestination() } })
const TTL_MS = 600_000

app.get('/healthz', async () => ({ status: 'ok' }))
app.post('/v1/segments', async (request, reply) => {
  const { namespace, tensors } = request.body
  const segments = {}
  for (const [key, { shape, dtype }] of Object.entries(tensors)) {
    const nbytes = shape.reduce((n, d) => n * d, 1)
    segments[key] = { name: `nos_psm_${randomBytes(8).toString('hex')}`, shape, dtype, nbytes }
  }
  return reply.code(201).send({ namespace, expires_at: new Date(Date.now() + TTL_MS).toISOString(), segments })
})
app.delete('/v1/segments/:name', async (_request, reply) => reply.code(204).send())
await app.listen({ host: '127.0.0.1', port })
process.on('SIGTERM', () => { app.close().then(() => process.exit(0)) })
