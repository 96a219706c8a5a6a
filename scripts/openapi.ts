/** Regenerates openapi/openapi.json from the route schemas: `npm run openapi`. A test fails when the two differ. */
import Fastify from 'fastify'
import { writeFileSync } from 'node:fs'
import app, { serverOptions } from '../src/app.js'
import { loadConfig } from '../src/lib/config.js'

const config = loadConfig({ TENSORSHM_LOG_LEVEL: 'silent', TENSORSHM_KEEP_ON_SHUTDOWN: 'true' })
const fastify = Fastify(serverOptions(config))
await fastify.register(app, { config })
await fastify.ready()
const file = new URL('../../openapi/openapi.json', import.meta.url)
writeFileSync(file, JSON.stringify(fastify.swagger(), null, 2) + '\n')
await fastify.close()
process.stdout.write(`wrote ${file.pathname}\n`)
