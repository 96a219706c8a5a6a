import pino from 'pino'

/** Log lines are written when this much has gathered, or every FLUSH_MS, whichever comes first. */
const MIN_LENGTH = 4096
const FLUSH_MS = 250

/**
 * Where the service's logs go: stdout, through a buffer. An unbuffered line costs a write (and a thread-pool hop)
 * per request, which under load was a fifth of a create+release pair's CPU. A crash-only exit flushes first; a
 * SIGKILL loses at most FLUSH_MS of lines, never a segment (the journal is written ahead, apart from the logs).
 */
export function logDestination (): pino.DestinationStream & { flushSync: () => void } {
  const destination = pino.destination({ dest: 1, minLength: MIN_LENGTH, sync: false })
  setInterval(() => { destination.flush() }, FLUSH_MS).unref()
  const flushSync = destination.flushSync.bind(destination)
  return Object.assign(destination, {
    // Before an exit that cannot wait: a write still in flight makes sonic-boom refuse, and that must not stop the exit.
    flushSync: () => { try { flushSync() } catch {} }
  })
}
