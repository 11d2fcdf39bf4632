/**
 * The one polling helper of every test tier: waits for a condition over real time, for tests that
 * drive real components (files, git, processes, hypervisors, an API server). Unit tests drive time
 * with FakeClock instead and never poll.
 */

/**
 * Polls `probe` every `intervalMs` until it returns a value other than `undefined` or `false`, and
 * returns that value. A probe that throws counts as "not yet". After `timeoutMs` it fails, naming
 * what it waited for and what the probe gave last.
 */
export async function until<T>(
  what: string,
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 60_000,
  intervalMs = 50,
): Promise<Exclude<T, undefined | false>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value as Exclude<T, undefined | false>;
      last = value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      const seen = last instanceof Error ? last.message : JSON.stringify(last);
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${seen})`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
