import { createHash } from 'node:crypto';

/** The `sub` a pairwise client sees for an account: stable per sector, unlinkable across sectors. */
export function pairwiseSubject(sectorIdentifier: string | undefined, accountId: string, salt: string): string {
  return createHash('sha256').update(`${sectorIdentifier}\0${accountId}\0${salt}`).digest('base64url');
}
