import type { FastifyInstance } from 'fastify'
import { OPERATOR } from '../../src/segments/caller.js'
import { shmFiles } from './build.js'

/** The segments the service has registered (kept, released or half-made files are not among them). */
export function registered (app: FastifyInstance): Set<string> {
  return new Set(app.segments.list(undefined, OPERATOR).map((r) => r.name))
}

/** Files with the prefix that the service does not know: neither a segment nor one of its own files in limbo. */
export function unknownFiles (app: FastifyInstance, prefix: string): string[] {
  return shmFiles(prefix).filter((f) => !app.segments.knows(f))
}

/** The registered segments on /dev/shm, without the files it keeps for reuse (whose trimming is not a request's doing). */
export function liveFiles (app: FastifyInstance, prefix: string): string[] {
  const live = registered(app)
  return shmFiles(prefix).filter((f) => live.has(f))
}
