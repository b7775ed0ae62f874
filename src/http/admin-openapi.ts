import { ADMIN_READ_SCOPE, ADMIN_WRITE_SCOPE } from '../oidc/client-metadata.js';

// The Admin API's OpenAPI 3.1 document, served at /admin/api/v1/openapi.json. Written by hand next to
// the routes (src/http/admin-api.ts); test/e2e/admin-api.test.ts checks that every route is in it
// and every path in it is a route.

type Json = Record<string, unknown>;

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const jsonOf = (schema: Json) => ({ content: { 'application/json': { schema } } });
const error = (description: string) => ({ description, ...jsonOf(ref('Error')) });

const ACCOUNT_ID = { name: 'id', in: 'path', required: true, description: 'The account id (a UUID; the `sub` of clients with public subjects).', schema: { type: 'string', format: 'uuid' } };

/** Refusals every authenticated operation may answer with. */
function refusals(scope: string, extra: Record<string, Json> = {}): Record<string, Json> {
  return {
    400: error('Bad input: the description says which parameter and why. Nothing changed.'),
    401: error('No access token, or one that is unknown, expired, or whose client was removed (`WWW-Authenticate: Bearer realm="tsunagi-admin"`).'),
    403: error(`The token lacks the \`${scope}\` scope (named in \`WWW-Authenticate\` and in the body's \`scope\`).`),
    429: { ...error('More than 120 calls this minute from this client.'), headers: { 'Retry-After': { description: 'Seconds until the next window.', schema: { type: 'integer' } } } },
    ...extra,
  };
}

const ENDED_PROPERTIES = {
  sessions: { type: 'integer', description: 'Sessions ended.' },
  grants: { type: 'integer', description: 'Grants revoked.' },
  logouts: { type: 'array', items: { type: 'object', properties: { clientId: { type: 'string' }, ok: { type: 'boolean' } } }, description: 'Back-channel logouts sent.' },
};

const secured = (scope: string) => [{ clientCredentials: [scope] }];

export function adminOpenApiDocument(issuer: string): Json {
  return {
    openapi: '3.1.0',
    info: {
      title: 'Tsunagi Admin API',
      version: '1',
      description: 'Account operations for support tooling. Authenticate as a client added with `clients add --admin read|write`, '
        + 'with a client-credentials access token from the token endpoint. Every call is rate-limited per client and recorded in the '
        + 'audit trail with the calling client\'s id (operations by the lifecycle event they perform; refusals after authentication as '
        + '`admin_api_refused`).',
    },
    servers: [{ url: `${issuer}/admin/api/v1` }],
    security: [{ clientCredentials: [] }],
    paths: {
      '/openapi.json': {
        get: {
          operationId: 'openApiDocument', summary: 'This document.', security: [],
          responses: { 200: { description: 'The OpenAPI 3.1 document.', ...jsonOf({ type: 'object' }) } },
        },
      },
      '/accounts': {
        get: {
          operationId: 'findAccounts',
          summary: 'Find accounts by a verified email, a verified phone, a sub (a client\'s pairwise sub with client_id), or an upstream identity.',
          description: 'Exactly one of `email`, `phone`, `sub` (optionally with `client_id`), or `issuer` with `subject`. An empty list when nothing matches.',
          security: secured(ADMIN_READ_SCOPE),
          parameters: [
            { name: 'email', in: 'query', schema: { type: 'string', maxLength: 320 } },
            { name: 'phone', in: 'query', description: 'E.164, or national in the deployment\'s DEFAULT_PHONE_REGION.', schema: { type: 'string', maxLength: 32 } },
            { name: 'sub', in: 'query', schema: { type: 'string', maxLength: 255 } },
            { name: 'client_id', in: 'query', description: 'With `sub`: the client whose (pairwise) sub it is.', schema: { type: 'string', maxLength: 255 } },
            { name: 'issuer', in: 'query', description: 'With `subject`: Google\'s or Apple\'s issuer.', schema: { type: 'string', maxLength: 2048 } },
            { name: 'subject', in: 'query', schema: { type: 'string', maxLength: 255 } },
          ],
          responses: {
            200: { description: 'The matching accounts (at most one).', ...jsonOf({ type: 'object', required: ['accounts'], properties: { accounts: { type: 'array', items: ref('AccountSummary') } } }) },
            ...refusals(ADMIN_READ_SCOPE),
          },
        },
      },
      '/accounts/{id}': {
        get: {
          operationId: 'showAccount', summary: 'An account\'s methods, links, sessions, grants and recent audit events.',
          security: secured(ADMIN_READ_SCOPE), parameters: [ACCOUNT_ID],
          responses: { 200: { description: 'The account.', ...jsonOf(ref('AccountDetails')) }, ...refusals(ADMIN_READ_SCOPE, { 404: error('No such account.') }) },
        },
        delete: {
          operationId: 'deleteAccount',
          summary: 'Delete the account at once, as the person\'s own deletion does: sessions and grants end (back-channel logout), Apple tokens are revoked, a confirmation is mailed.',
          security: secured(ADMIN_WRITE_SCOPE), parameters: [ACCOUNT_ID],
          responses: {
            200: {
              description: 'Deleted.',
              ...jsonOf({
                type: 'object', required: ['deleted'],
                properties: {
                  deleted: { const: true }, ...ENDED_PROPERTIES,
                  appleTokens: { type: 'object', properties: { revoked: { type: 'integer' }, failed: { type: 'integer' } } },
                  confirmationSent: { type: 'boolean' },
                },
              }),
            },
            ...refusals(ADMIN_WRITE_SCOPE, { 404: error('No such account.') }),
          },
        },
      },
      '/accounts/{id}/disable': {
        post: {
          operationId: 'disableAccount', summary: 'Disable the account: no sign-in by any method, its sessions and grants end at once.',
          security: secured(ADMIN_WRITE_SCOPE), parameters: [ACCOUNT_ID],
          requestBody: { required: false, ...jsonOf({ type: 'object', properties: { reason: { type: 'string', maxLength: 200 } } }) },
          responses: {
            200: { description: 'Disabled.', ...jsonOf({ type: 'object', required: ['disabled'], properties: { disabled: { const: true }, ...ENDED_PROPERTIES } }) },
            ...refusals(ADMIN_WRITE_SCOPE, { 404: error('No such account.'), 409: error('The account is already disabled (`already_disabled`).') }),
          },
        },
      },
      '/accounts/{id}/enable': {
        post: {
          operationId: 'enableAccount', summary: 'Enable a disabled account.',
          security: secured(ADMIN_WRITE_SCOPE), parameters: [ACCOUNT_ID],
          responses: {
            200: { description: 'Enabled.', ...jsonOf({ type: 'object', required: ['enabled'], properties: { enabled: { const: true } } }) },
            ...refusals(ADMIN_WRITE_SCOPE, { 404: error('No such account.'), 409: error('The account is not disabled (`not_disabled`).') }),
          },
        },
      },
      '/accounts/{id}/sessions': {
        delete: {
          operationId: 'endSessions', summary: 'Sign the account out everywhere: sessions, grants and their tokens end, with back-channel logout.',
          security: secured(ADMIN_WRITE_SCOPE), parameters: [ACCOUNT_ID],
          responses: {
            200: { description: 'Ended.', ...jsonOf({ type: 'object', properties: ENDED_PROPERTIES }) },
            ...refusals(ADMIN_WRITE_SCOPE, { 404: error('No such account.') }),
          },
        },
      },
      '/accounts/{id}/providers/{provider}': {
        delete: {
          operationId: 'unlinkProvider', summary: 'Unlink the account\'s Google or Apple identity (Apple\'s refresh token is revoked at Apple).',
          security: secured(ADMIN_WRITE_SCOPE),
          parameters: [ACCOUNT_ID, { name: 'provider', in: 'path', required: true, schema: { enum: ['google', 'apple'] } }],
          responses: {
            200: { description: 'Unlinked.', ...jsonOf({ type: 'object', properties: { unlinked: { enum: ['google', 'apple'] }, appleTokenRevoked: { type: 'boolean' } } }) },
            ...refusals(ADMIN_WRITE_SCOPE, {
              404: error('No such account, or no such provider linked to it.'),
              409: error('It is the account\'s last way to sign in (`last_method`): nothing changed.'),
            }),
          },
        },
      },
      '/audit-events': {
        get: {
          operationId: 'exportAuditEvents', summary: 'Audit events in [from, to), oldest first, of every account or of one.',
          security: secured(ADMIN_READ_SCOPE),
          parameters: [
            { name: 'from', in: 'query', required: true, description: 'RFC 3339 date or date-time (inclusive).', schema: { type: 'string' } },
            { name: 'to', in: 'query', required: true, description: 'RFC 3339 date or date-time (exclusive); at most 366 days after from.', schema: { type: 'string' } },
            { name: 'account_id', in: 'query', schema: { type: 'string', format: 'uuid' } },
          ],
          responses: {
            200: {
              description: 'The events.',
              ...jsonOf({ type: 'object', properties: { from: { type: 'string', format: 'date-time' }, to: { type: 'string', format: 'date-time' }, events: { type: 'array', items: ref('AuditEvent') } } }),
            },
            ...refusals(ADMIN_READ_SCOPE),
          },
        },
      },
    },
    components: {
      securitySchemes: {
        clientCredentials: {
          type: 'oauth2',
          description: 'A client added with `clients add --admin read` (admin:read) or `--admin write` (admin:read and admin:write).',
          flows: { clientCredentials: { tokenUrl: `${issuer}/token`, scopes: { [ADMIN_READ_SCOPE]: 'Find and show accounts, export audit events.', [ADMIN_WRITE_SCOPE]: 'Disable, enable, delete, unlink, end sessions.' } } },
        },
      },
      schemas: {
        Error: {
          type: 'object', required: ['error', 'error_description'],
          properties: {
            error: { type: 'string', examples: ['invalid_token', 'insufficient_scope', 'not_found', 'already_disabled', 'not_disabled', 'last_method', 'invalid_request', 'rate_limited'] },
            error_description: { type: 'string' },
            scope: { type: 'string', description: 'On 403: the scope the call needs.' },
          },
        },
        AccountSummary: {
          type: 'object',
          properties: {
            id: { type: 'string', format: 'uuid' }, createdAt: { type: 'string', format: 'date-time' }, disabledAt: { type: ['string', 'null'], format: 'date-time' },
            primaryEmail: { type: ['string', 'null'] }, emails: { type: 'array', items: { type: 'string' } }, phones: { type: 'array', items: { type: 'string' } },
            providers: { type: 'array', items: { enum: ['google', 'apple'] } },
          },
        },
        AccountDetails: {
          allOf: [ref('AccountSummary'), {
            type: 'object',
            properties: {
              name: { type: ['string', 'null'] }, updatedAt: { type: 'string', format: 'date-time' }, disabledReason: { type: ['string', 'null'] },
              passkeys: { type: 'array', items: { type: 'object' } },
              links: { type: 'array', items: { type: 'object', properties: { provider: { enum: ['google', 'apple'] }, issuer: { type: 'string' }, subject: { type: 'string' }, email: { type: ['string', 'null'] } } } },
              sessions: { type: 'array', items: { type: 'object', properties: { signedInAt: { type: ['string', 'null'] }, amr: { type: 'array', items: { type: 'string' } }, clientIds: { type: 'array', items: { type: 'string' } }, expiresAt: { type: ['string', 'null'] } } } },
              grants: { type: 'array', items: { type: 'object', properties: { grantId: { type: 'string' }, clientId: { type: 'string' }, scope: { type: 'string' }, grantedAt: { type: 'string' } } } },
              recentAudit: { type: 'array', items: ref('AuditEvent') },
            },
          }],
        },
        AuditEvent: {
          type: 'object',
          properties: {
            id: { type: 'string' }, type: { type: 'string' }, accountId: { type: ['string', 'null'] }, clientId: { type: ['string', 'null'], description: 'For Admin API calls: the operator client.' },
            ip: { type: ['string', 'null'] }, userAgent: { type: ['string', 'null'] }, data: { type: 'object' }, createdAt: { type: 'string', format: 'date-time' },
          },
        },
      },
    },
  };
}
