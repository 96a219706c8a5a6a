// The house rules that lint enforces, shown failing on imports that run the wrong way, and the README's drawing of
// the folders checked against the folders.
import t from 'tap'
import { ESLint } from 'eslint'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { root } from './helpers/server.js'

const eslint = new ESLint({ cwd: root })
const restricted = async (file: string, code: string): Promise<string[]> => {
  const [result] = await eslint.lintText(code, { filePath: join(root, file) })
  return (result?.messages ?? []).filter((m) => m.ruleId === 'no-restricted-imports').map((m) => m.message)
}

t.test('an import that runs the wrong way fails lint, naming the rule', async (t) => {
  const wrong: Array<[string, string, RegExp]> = [
    ['routes/stats2.ts', "import { capacity } from '../native/shm.js'\nexport const c = capacity\n", /routes call the services in src\/, never libc/],
    ['routes/segments/x.ts', "import { probe } from '../../native/segment-file.js'\nexport const p = probe\n", /never libc/],
    ['src/segments/x.ts', "import { errorResponses } from '../../routes/error-responses.js'\nexport const e = errorResponses\n", /src\/ never imports routes\//],
    ['src/plugins/app/x.ts', "import { ErrorSchema } from '../../../routes/error-responses.js'\nexport const e = ErrorSchema\n", /src\/ never imports routes\//],
    ['native/x.ts', "import { errors } from '../src/errors.js'\nexport const e = errors\n", /native\/ is the bottom layer/],
    ['native/y.ts', "import Fastify from 'fastify'\nexport const f = Fastify\n", /knows nothing of HTTP/],
    ['src/codecs/x.ts', "import { SegmentRegistry } from '../segments/registry.js'\nexport const r = SegmentRegistry\n", /codecs are leaves/],
    ['src/codecs/y.ts', "import { errors } from '../errors.js'\nexport const e = errors\n", /codecs are leaves/],
    ['src/codecs/z.ts', "import type { FastifyInstance } from 'fastify'\nexport type F = FastifyInstance\n", /knows nothing of HTTP/],
    ['src/segments/y.ts', "import type { FastifyBaseLogger } from 'fastify'\nexport type L = FastifyBaseLogger\n", /take a Logger/],
    ['src/journal/x.ts', "import settings from '../plugins/app/settings.js'\nexport const s = settings\n", /do not reach up/]
  ]
  for (const [file, code, message] of wrong) {
    const found = await restricted(file, code)
    t.equal(found.length, 1, `${file}: ${code.split('\n')[0] ?? ''}`)
    t.match(found[0], message)
  }
})

t.test('imports that run the right way pass', async (t) => {
  const right: Array<[string, string]> = [
    ['routes/x.ts', "import { errors } from '../src/errors.js'\nexport const e = errors\n"],
    ['src/segments/x.ts', "import { capacity } from '../../native/shm.js'\nimport { errors } from '../errors.js'\nimport { parseDtype } from '../codecs/dtype.js'\nexport const x = [capacity, errors, parseDtype]\n"],
    ['src/codecs/x.ts', "import { parseDtype } from './dtype.js'\nexport const p = parseDtype\n"],
    ['src/app.ts', "import v1 from '../routes/v1.js'\nexport default v1\n"]
  ]
  for (const [file, code] of right) t.same(await restricted(file, code), [], file)
})

t.test('the README draws the folders as they are', async (t) => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8')
  const drawing = /## Layout\n[\s\S]*?```text\n([\s\S]*?)```/.exec(readme)?.[1] ?? ''
  const drawn = [...drawing.matchAll(/^\s*([a-z.][\w./-]*\/)\s/gm)].map((m) => m[1] as string)
  const dirs = (dir: string): string[] => readdirSync(join(root, dir)).filter((d) => statSync(join(root, dir, d)).isDirectory()).map((d) => `${dir}/${d}/`)
  const actual = ['src', 'routes', 'native'].flatMap((d) => [`${d}/`, ...dirs(d), ...dirs(d).flatMap((s) => dirs(s.slice(0, -1)))])
  t.same(drawn.filter((d) => /^(src|routes|native)\//.test(d)).sort(), actual.sort())
})
