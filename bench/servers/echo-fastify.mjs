// Baseline for benchmark 1: a bare Fastify 5 app (no plugins, no logger, no schemas) in its own process.
// POST /echo answers the JSON body it was sent; DELETE /echo/:name answers 204, so that a POST+DELETE
// sequence costs exactly the HTTP and JSON work of the service's pair without any shared memory behind it.
import Fastify from 'fastify'

const port = Number(process.argv[2])
const app = Fastify({ logger: false })
app.get('/healthz', async () => ({ status: 'ok' }))
app.post('/echo', async (request, reply) => reply.code(201).send(request.body))
app.delete('/echo/:name', async (_request, reply) => reply.code(204).send())
await app.listen({ host: '127.0.0.1', port })
process.on('SIGTERM', () => { app.close().then(() => process.exit(0)) })
