/**
 * Tests that read ../shared/specs (the protocol specs the codecs are generated from) run only
 * where the specs are: beside CI's checkout, not in a user's clone of the repository alone. Such
 * a test is skipped with a reason that says so, and under CI (CI=true) a missing spec fails
 * instead, so the freshness checks cannot silently stop running there.
 */
import { existsSync } from 'node:fs';

export function specSkip(path: string): string | false {
  if (existsSync(path)) return false;
  if (process.env['CI'] === 'true') throw new Error(`CI=true but the protocol spec ${path} is missing`);
  return `did not run: the protocol spec ${path} is absent (it is in ../shared beside CI's checkout, not in the repository)`;
}
