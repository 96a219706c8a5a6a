import type { Test } from 'tap'
import { startService as start, type Service, type StartOptions } from '../../scripts/lib/service.js'

export { GiveUp, poll, root, runService, sleep, type Service } from '../../scripts/lib/service.js'

/** The compiled service (see scripts/lib/service.ts), SIGKILLed on teardown unless the test stopped it already. */
export async function startService (t: Test, env: Record<string, string>, options: StartOptions = {}): Promise<Service> {
  const server = await start(env, options)
  t.teardown(async () => {
    if (server.child.exitCode === null && server.child.signalCode === null) {
      server.child.kill('SIGKILL')
      await server.exited
    }
  })
  return server
}
