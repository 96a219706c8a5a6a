/** Regenerates openapi/openapi.json from the route schemas: `npm run openapi`. A test fails when the two differ. */
import Fastify from 'fastify'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import app, { serverOptions } from '../src/app.js'
import { loadConfig } from '../src/config.js'

const stateDir = mkdtempSync(join(tmpdir(), 'tshm-openapi-'))
const config = loadConfig({ TENSORSHM_LOG_LEVEL: 'silent', TENSORSHM_STATE_DIR: stateDir })
const fastify = Fastify(serverOptions(config))
await fastify.register(app, { config })
await fastify.ready()
const file = new URL('../../openapi/openapi.json', import.meta.url)
writeFileSync(file, JSON.stringify(fastify.swagger(), null, 2) + '\n')
await fastify.close()
rmSync(stateDir, { recursive: true, force: true })
process.stdout.write(`wrote ${file.pathname}\n`)
