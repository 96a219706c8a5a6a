// Swagger UI in a real headless Chromium (Debian's, driven by playwright-core over CDP) against the compiled
// service: every tag and operation of the OpenAPI document is shown, and "Try it out" on POST /v1/segments
// creates a real segment on /dev/shm. Everything stays on 127.0.0.1.
import t, { type Test } from 'tap'
import { chromium, type Browser, type Locator, type Page } from 'playwright-core'
import { existsSync, mkdirSync, rmSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { checkNoLeftovers, shmFiles, stateDir, suitePrefix } from './helpers/build.js'
import { api, spawnProc, tempDir, which } from './helpers/e2e.js'
import { GiveUp, poll, root, startService } from './helpers/server.js'

const CHROMIUM = '/usr/bin/chromium'
// Without the background-networking flags Chromium keeps calling home, which on a closed network is a stream of
// refused connections.
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync']
const SCREENSHOT = join(root, 'test-artifacts', 'swagger-ui-try-it-out.png')
const FAILED = join(root, 'test-artifacts', 'swagger-ui-try-it-out-failed.png')
const REQUEST = '{"namespace": "browser/test", "tensors": {"img": {"shape": [1, 48, 64, 3], "dtype": "uint8"}}}'
const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace']

const prefix = suitePrefix('browser')

interface Operation { tags?: string[], summary?: string }
interface OpenApi { info: { title: string }, tags?: Array<{ name: string }>, paths: Record<string, Record<string, Operation>> }
/** What one operation looks like in the UI's list: its method, path and summary. */
type Shown = `${string} ${string}: ${string}`

/** Starts Debian's Chromium with a fresh profile and connects to it; both are gone when the test ends. */
async function openBrowser (t: Test): Promise<Browser> {
  const profile = tempDir(t, 'chromium')
  const proc = spawnProc(t, CHROMIUM, [...CHROMIUM_ARGS, `--user-data-dir=${profile}`, '--remote-debugging-address=127.0.0.1',
    '--remote-debugging-port=0', 'about:blank'])
  const endpoint = await poll('Chromium\'s DevTools endpoint', async () => {
    const m = /DevTools listening on (ws:\/\/127\.0\.0\.1:\d+\/\S+)/.exec(proc.output())
    if (m?.[1] !== undefined) return m[1]
    if (!proc.running()) throw new GiveUp(`chromium exited with ${await proc.exited}: ${proc.output()}`)
    throw new Error(proc.output().slice(-500))
  }, { timeoutMs: 20_000, intervalMs: 100 })
  const browser = await chromium.connectOverCDP(endpoint, { timeout: 20_000 })
  // Runs before the process is stopped (teardowns run last-in, first-out).
  t.teardown(async () => { await browser.close().catch(() => {}) })
  return browser
}

/** Every request the page makes must go to the service: anything else is recorded and aborted. */
async function loopbackOnly (page: Page, base: string): Promise<string[]> {
  const strays: string[] = []
  await page.route('**/*', async (route) => {
    const url = route.request().url()
    if (url.startsWith(`${base}/`)) return await route.continue()
    strays.push(url)
    await route.abort()
  })
  return strays
}

/** The operations the document puts under each tag, as the UI shows them (untagged ones go under "default"). */
function expectedByTag (doc: OpenApi): Map<string, Shown[]> {
  const byTag = new Map<string, Shown[]>((doc.tags ?? []).map((tag) => [tag.name, []]))
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      if (!METHODS.includes(method)) continue
      for (const tag of op.tags ?? ['default']) {
        byTag.set(tag, [...byTag.get(tag) ?? [], `${method.toUpperCase()} ${path}: ${op.summary ?? ''}`])
      }
    }
  }
  return byTag
}

/** The tag sections the UI shows, each with its operations. */
async function shownByTag (page: Page): Promise<Map<string, Shown[]>> {
  const byTag = new Map<string, Shown[]>()
  for (const section of await page.locator('.opblock-tag-section').all()) {
    const tag = await section.locator('.opblock-tag').getAttribute('data-tag') ?? '(no data-tag)'
    const ops: Shown[] = []
    for (const op of await section.locator('.opblock').all()) {
      const method = (await op.locator('.opblock-summary-method').innerText()).trim()
      const path = await op.locator('.opblock-summary-path').getAttribute('data-path') ?? '(no data-path)'
      const summary = await op.locator('.opblock-summary-description').count() > 0
        ? (await op.locator('.opblock-summary-description').innerText()).trim()
        : ''
      ops.push(`${method} ${path}: ${summary}`)
    }
    byTag.set(tag, ops)
  }
  return byTag
}

/** The operation block a person would find by its method badge and path. */
const operation = (page: Page, method: string, path: string): Locator => page.locator('.opblock')
  .filter({ has: page.locator('.opblock-summary-method', { hasText: new RegExp(`^${method}$`) }) })
  .filter({ has: page.locator(`.opblock-summary-path[data-path="${path}"]`) })

const sorted = (m: Map<string, Shown[]>) => [...m.entries()].map(([tag, ops]) => [tag, [...ops].sort()]).sort()

if (which(CHROMIUM) === undefined) {
  t.fail(`chromium missing: run scripts/install-test-deps.sh (no executable ${CHROMIUM})`)
} else {
  t.test('Swagger UI in Chromium shows the whole API and its "Try it out" creates a real segment', async (t) => {
    const server = await startService(t, { TENSORSHM_SEGMENT_PREFIX: prefix, TENSORSHM_STATE_DIR: stateDir(t) })
    const doc = await (await fetch(`${server.url}/openapi.json`)).json() as OpenApi
    const expected = expectedByTag(doc)
    t.ok((doc.tags ?? []).length > 0, 'the document declares its tags')

    mkdirSync(join(root, 'test-artifacts'), { recursive: true })
    rmSync(FAILED, { force: true })
    const browser = await openBrowser(t)
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } })
    const page = await context.newPage()
    page.setDefaultTimeout(20_000)
    const strays = await loopbackOnly(page, server.url)
    const pageErrors: string[] = []
    page.on('pageerror', (err) => { pageErrors.push(err.message) })

    await t.test('every tag is a section, with every operation of its own', async (t) => {
      await page.goto(`${server.url}/docs`)
      await page.locator('.information-container .title', { hasText: doc.info.title }).waitFor()
      const total = [...expected.values()].reduce((n, ops) => n + ops.length, 0)
      await poll('Swagger UI rendering every operation', async () => {
        const n = await page.locator('.opblock').count()
        if (n < total) throw new Error(`${n} of ${total} operations shown`)
      }, { timeoutMs: 20_000 })
      const shown = await shownByTag(page)
      for (const tag of expected.keys()) t.ok(shown.has(tag), `tag "${tag}" is shown as a section`)
      t.same(sorted(shown), sorted(expected), 'each section lists exactly its operations, by method, path and summary')
      t.equal(await page.locator('.opblock-summary-path').count(), total, 'one .opblock-summary-path per operation')
      t.equal(await page.locator('.errors-wrapper').count(), 0, 'Swagger UI reports no errors in the document')
    })

    let name = ''
    await t.test('"Try it out" on POST /v1/segments, as a person would', async (t) => {
      t.teardown(async () => {
        // What the page looked like when it went wrong, for whoever reads the CI log.
        if (!t.passing()) await page.screenshot({ path: FAILED, fullPage: true }).catch(() => {})
      })
      const op = operation(page, 'POST', '/v1/segments')
      t.equal(await op.count(), 1, 'one POST /v1/segments block')
      await op.locator('.opblock-summary-control').click()
      await op.getByRole('button', { name: 'Try it out' }).click()
      const body = op.locator('textarea.body-param__text')
      await body.fill(REQUEST)
      t.equal(await body.inputValue(), REQUEST, 'the body is replaced')
      await op.getByRole('button', { name: 'Execute' }).click()

      const response = op.locator('.live-responses-table .response')
      await response.locator('.response-col_status').waitFor()
      t.equal((await response.locator('.response-col_status').innerText()).trim(), '201', 'the page shows 201')
      t.equal((await op.locator('.request-url pre').innerText()).trim(), `${server.url}/v1/segments`, 'sent to the service itself')
      const text = await response.locator('.highlight-code pre.microlight').first().innerText()
      const made = JSON.parse(text) as { namespace: string, segments: { img: { name: string, shape: number[], dtype: string, nbytes: number } } }
      t.equal(made.namespace, 'browser/test')
      t.match(made.segments.img, { shape: [1, 48, 64, 3], dtype: 'uint8', nbytes: 9216 })
      name = made.segments.img.name
      t.match(name, new RegExp(`^${prefix}[0-9a-f]{16}$`), 'a segment name with this suite\'s prefix')

      await page.screenshot({ path: SCREENSHOT, fullPage: true })
      t.ok(statSync(SCREENSHOT).size > 0, `screenshot kept at ${SCREENSHOT}`)
    })

    await t.test('the segment made in the browser is on /dev/shm and known to the API', async (t) => {
      if (name === '') {
        t.fail('the browser reported no segment name')
        return
      }
      t.same(shmFiles(prefix), [name], 'exactly that file, and no other')
      t.equal(statSync(`/dev/shm/${name}`).size, 9216, '1 × 48 × 64 × 3 bytes')
      const got = await api(server.url, 'GET', `/v1/segments/${name}`)
      t.equal(got.status, 200, 'GET /v1/segments/<name> finds it')
      t.match(got.body, { name, namespace: 'browser/test', key: 'img', shape: [1, 48, 64, 3], dtype: 'uint8', nbytes: 9216 })
    })

    await t.test('nothing left the machine and the page threw nothing', async (t) => {
      t.same(strays, [], 'every request went to the service on 127.0.0.1')
      t.same(pageErrors, [], 'no uncaught errors in the page')
    })

    await t.test('releasing the namespace and a SIGTERM leave nothing behind', async (t) => {
      await context.close()
      t.same((await api(server.url, 'DELETE', '/v1/segments?namespace=browser/test')).body, { released: 1 }, 'the namespace held one segment')
      t.notOk(existsSync(`/dev/shm/${name}`), 'its name is gone from /dev/shm')
      server.child.kill('SIGTERM')
      t.equal(await server.exited, 0, 'the service exits 0')
      t.same(shmFiles(prefix), [], 'nothing of this instance is left on /dev/shm')
    })
  })
}

checkNoLeftovers(t, prefix)
