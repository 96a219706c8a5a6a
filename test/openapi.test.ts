import t from 'tap'
import { readFileSync } from 'node:fs'
import { build, suitePrefix } from './helpers/build.js'

t.test('the committed openapi/openapi.json is what the code generates (npm run openapi regenerates it)', async (t) => {
  const app = await build(t, { TENSORSHM_SEGMENT_PREFIX: suitePrefix('openapi') })
  const committed = JSON.parse(readFileSync(new URL('../openapi/openapi.json', import.meta.url), 'utf8'))
  t.same(app.swagger(), committed)
  const served = await app.inject({ url: '/openapi.json' })
  t.same(served.json(), committed)
})

t.test('every operation has a tag, a summary, and documents its error responses', async (t) => {
  const app = await build(t, { TENSORSHM_SEGMENT_PREFIX: suitePrefix('openapi') })
  const doc = app.swagger() as unknown as { paths: Record<string, Record<string, { tags?: string[], summary?: string, responses: Record<string, { description?: string, content?: Record<string, { schema: { $ref?: string } }> }> }>> }
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const label = `${method.toUpperCase()} ${path}`
      t.ok(op.tags !== undefined && op.tags.length > 0, `${label} has a tag`)
      t.ok(op.summary, `${label} has a summary`)
      const errorsDocumented = Object.entries(op.responses).filter(([s]) => Number(s) >= 400)
      if (path.startsWith('/v1/')) t.ok(errorsDocumented.some(([s]) => s === '500'), `${label} documents 500`)
      for (const [status, r] of errorsDocumented) {
        t.match(r.description, /`TSHM_[A-Z_]+`/, `${label} ${status} lists its codes`)
        t.equal(r.content?.['application/json']?.schema.$ref, '#/components/schemas/Error', `${label} ${status} uses the Error schema`)
      }
    }
  }
})
