/**
 * What a unique constraint refused: the email, phone, passkey or upstream identity already belongs to
 * an account (maybe another person's). Stores throw a subclass instead of the raw Postgres error, so
 * that two requests racing for the same thing get one answer a flow can show.
 */
export abstract class AlreadyTaken extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}
