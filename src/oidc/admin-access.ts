import type { Provider } from 'oidc-provider';
import { adminScopesIn, type AdminScope } from './client-metadata.js';

/** Who may call the Admin API, and why not: each answer maps to one HTTP refusal (src/http/admin-api.ts). */
export type AdminAccess =
  | { ok: true; clientId: string; scopes: AdminScope[] }
  | { ok: false; status: 401; error: 'invalid_token'; description: string; tokenPresented: boolean }
  | { ok: false; status: 403; error: 'insufficient_scope'; description: string; clientId: string };

const BEARER = /^Bearer ([A-Za-z0-9\-._~+/]+=*)$/;

/**
 * An Admin API call is allowed when it carries a client-credentials access token (never a token a
 * person's sign-in produced) whose scope holds `needed`, and its client still exists and is still
 * registered with that scope: removing the client, or registering it again without the scope, ends
 * its tokens' access at once.
 */
export async function authorizeAdminCall(provider: Provider, authorization: string | undefined, needed: AdminScope): Promise<AdminAccess> {
  const token = BEARER.exec(authorization ?? '')?.[1];
  if (!token) {
    return { ok: false, status: 401, error: 'invalid_token', tokenPresented: false, description: 'send a client-credentials access token of an Admin API client (Authorization: Bearer ...)' };
  }
  const credentials = await provider.ClientCredentials.find(token);
  if (!credentials || credentials.isExpired) {
    return { ok: false, status: 401, error: 'invalid_token', tokenPresented: true, description: 'the access token is unknown or expired' };
  }
  const clientId = credentials.clientId as string;
  const client = await provider.Client.find(clientId);
  if (!client) return { ok: false, status: 401, error: 'invalid_token', tokenPresented: true, description: 'the access token\'s client no longer exists' };
  const registered = adminScopesIn(client.scope);
  const scopes = adminScopesIn(credentials.scope).filter((s) => registered.includes(s));
  if (!scopes.includes(needed)) {
    return {
      ok: false, status: 403, error: 'insufficient_scope', clientId,
      description: `this call needs the ${needed} scope: ask for it in the token request (scope=${needed}); only a client added with clients add --admin ${needed === 'admin:write' ? 'write' : 'read'} can get it`,
    };
  }
  return { ok: true, clientId, scopes };
}
