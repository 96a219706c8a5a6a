// For information in benchmark 1 (its earlier baseline): a bare Fastify 5 app (no plugins, no logger, no schemas)
// in its own process; POST /echo answers the JSON body it was sent (64 KiB of JSON: the tensor sent by value).
import Fastify from 'fastify'

const port = Number(process.argv[2])
const app = Fastify({ logger: false })
app.get('/healthz', async () => ({ status: 'ok' }))
app.post('/echo', async (request, reply) => reply.code(201).send(request.body))
await app.listen({ host: '127.0.0.1', port })
process.on('SIGTERM', () => { app.close().then(() => process.exit(0)) })
