import type { Context } from 'koa';
import { z } from 'zod';

/**
 * One schema per form of Tsunagi's own pages, parsed once at the edge (DESIGN: "parse input at the
 * edge"): a handler reads typed fields, never `String(body.x ?? '')`.
 *
 * A field is a single string or absent. Anything else a client can make a form parser produce (a
 * repeated field arrives as an array, a JSON body as any shape) reads as absent, and the value's own
 * check (checkEmailAddress, parsePhoneNumber, parseCode, ...) then refuses it with the same readable
 * page as an empty field: a schema never throws, so hostile input never becomes a 500.
 */
const field = z.string().optional().catch(undefined);

export const FORMS = {
  /** Login, require-email and the account page's "add an email". */
  email: z.object({ email: field }),
  /** Every code page (sign-in, link, require-email, account). */
  code: z.object({ code: field }),
  /** Sign-in by SMS, the link offer's SMS choice, the account page's "add a phone" and "remove a phone". */
  phone: z.object({ phone: field }),
  /** The link offer's email choice: which of the account's addresses, by its key. */
  linkEmail: z.object({ key: field }),
  /** The account page's "make primary" and "remove" for an address. */
  emailKey: z.object({ email_key: field }),
  /** The account page's "rename a passkey". */
  passkeyName: z.object({ name: field }),
} as const;

/**
 * The JSON bodies of the passkey ceremonies (views/assets/passkey.js). `response` stays unknown here:
 * its WebAuthn shape is checked by parseAuthenticationResponse / parseRegistrationResponse
 * (src/methods/passkey.ts), which refuse it with `invalid_response`.
 */
export const PASSKEY_BODIES = {
  authentication: z.object({ response: z.unknown().optional() }),
  registration: z.object({ response: z.unknown().optional(), name: z.unknown().optional() }),
} as const;

/** The form (or JSON) body of `ctx`, parsed with `schema`; a body that is not an object reads as an empty one. */
export function parseForm<S extends z.ZodType>(ctx: Context, schema: S): z.infer<S> {
  const body: unknown = ctx.request.body;
  const parsed = schema.safeParse(typeof body === 'object' && body !== null && !Array.isArray(body) ? body : {});
  if (parsed.success) return parsed.data;
  // The schemas above accept any object (their fields catch or are optional): unreachable, but a
  // schema that refuses is a 400 page, never a 500.
  throw new BadForm();
}

/** A body its form's schema refused (src/http/errors.ts renders a status below 500 as a readable page). */
export class BadForm extends Error {
  readonly status = 400;
  constructor() {
    super('this form could not be read');
    this.name = 'BadForm';
  }
}
