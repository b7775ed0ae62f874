/**
 * Sign-in to a disabled account, refused whatever the method (src/flows/login.ts completeSignIn is
 * where every method ends). The error pages render it (status and message key) in the person's language.
 */
export class AccountDisabled extends Error {
  readonly status = 403;
  readonly messageKey = 'error.account_disabled';
  readonly titleKey = 'error.account_disabled.title';
  constructor(readonly accountId: string) {
    super('this account is disabled');
    this.name = 'AccountDisabled';
  }
}
