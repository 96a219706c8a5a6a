import { Worker } from 'node:worker_threads'

/** Regular files of a directory whose names start with a prefix, as one lstat pass saw them. */
export interface Listing {
  names: string[]
  ino: BigUint64Array
  dev: BigUint64Array
  /** Bytes each file really holds (st_blocks x 512): what it costs /dev/shm, whatever its size says. */
  allocated: Float64Array
  /** False when the scan stopped early (too many entries, or out of time): the listing is then partial. */
  complete: boolean
}

// Runs in a worker, so that a directory of a million planted names costs that thread, not the event loop. lstat,
// never stat: a symlink is not followed (its target's size would be someone else's to claim) and is not a file.
const SOURCE = `
const { parentPort, workerData } = require('node:worker_threads')
const fs = require('node:fs')
const { dir, prefix, maxEntries } = workerData
const names = [], ino = [], dev = [], allocated = []
let complete = true
const d = fs.opendirSync(dir, { bufferSize: 4096 })
try {
  for (let e = d.readSync(); e !== null; e = d.readSync()) {
    if (!e.name.startsWith(prefix)) continue
    if (names.length >= maxEntries) { complete = false; break }
    const st = fs.lstatSync(dir + '/' + e.name, { bigint: true, throwIfNoEntry: false })
    if (st === undefined || !st.isFile()) continue
    names.push(e.name); ino.push(st.ino); dev.push(st.dev); allocated.push(Number(st.blocks) * 512)
  }
} finally { d.closeSync() }
parentPort.postMessage({ names, ino: BigUint64Array.from(ino), dev: BigUint64Array.from(dev), allocated: Float64Array.from(allocated), complete })
`

const EMPTY: Listing = { names: [], ino: new BigUint64Array(0), dev: new BigUint64Array(0), allocated: new Float64Array(0), complete: false }

/** Lists `dir` off the event loop, bounded in entries and in time; a scan that fails or overruns is partial. */
export async function scanDir (dir: string, prefix: string, { maxEntries, timeoutMs }: { maxEntries: number, timeoutMs: number }): Promise<Listing> {
  return await new Promise<Listing>((resolve) => {
    const worker = new Worker(SOURCE, { eval: true, workerData: { dir, prefix, maxEntries }, resourceLimits: { maxOldGenerationSizeMb: 256 } })
    const timer = setTimeout(() => { worker.terminate().catch(() => {}); resolve(EMPTY) }, timeoutMs)
    // A scan in progress never holds up an exit.
    timer.unref()
    worker.unref()
    worker.once('message', (listing: Listing) => { clearTimeout(timer); resolve(listing) })
    worker.once('error', () => { clearTimeout(timer); resolve(EMPTY) })
    worker.once('exit', () => { clearTimeout(timer); resolve(EMPTY) })
  })
}
