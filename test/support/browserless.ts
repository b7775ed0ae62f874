// A minimal browser for driving Tsunagi's HTML forms over real HTTP: a cookie jar, manual redirects,
// and helpers to read forms. Enough for the protocol end-to-end tests; the Chromium tests see pixels.

export class CookieJar {
  private cookies = new Map<string, { value: string; sameSite: 'strict' | 'lax' | 'none' }>();

  store(res: Response): void {
    for (const raw of res.headers.getSetCookie()) {
      const [pair] = raw.split(';');
      const eq = pair?.indexOf('=') ?? -1;
      if (!pair || eq < 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      // No SameSite attribute counts as Lax, as in Chromium.
      const sameSite = (/;\s*samesite=(strict|lax|none)/i.exec(raw)?.[1]?.toLowerCase() ?? 'lax') as 'strict' | 'lax' | 'none';
      if (/expires=Thu, 01 Jan 1970/i.test(raw) || value === '') this.cookies.delete(name);
      else this.cookies.set(name, { value, sameSite });
    }
  }

  /** The Cookie header; a cross-site POST (e.g. Apple's form_post) carries only SameSite=None cookies. */
  header(opts: { crossSitePost?: boolean } = {}): string {
    return [...this.cookies].filter(([, c]) => !opts.crossSitePost || c.sameSite === 'none').map(([k, c]) => `${k}=${c.value}`).join('; ');
  }

  get(name: string): string | undefined { return this.cookies.get(name)?.value; }
  names(): string[] { return [...this.cookies.keys()]; }
  /** Tests: put a cookie into the jar as if a response had set it (or remove it with undefined). */
  put(name: string, value: string | undefined): void {
    if (value === undefined) this.cookies.delete(name);
    else this.cookies.set(name, { value, sameSite: 'lax' });
  }
}

type RequestInit = { method?: string; form?: Record<string, string>; crossSitePost?: boolean };

export class Browser {
  readonly jar = new CookieJar();
  constructor(readonly headers: Record<string, string> = {}) {}

  /** `crossSitePost`: a form another site's page posts here (only SameSite=None cookies go along). */
  async request(url: string, init: RequestInit = {}): Promise<{ res: Response; body: string; url: string }> {
    const res = await fetch(url, {
      method: init.method ?? (init.form ? 'POST' : 'GET'),
      redirect: 'manual',
      headers: {
        ...this.headers,
        cookie: this.jar.header({ crossSitePost: init.crossSitePost === true && (init.method ?? (init.form ? 'POST' : 'GET')) === 'POST' }),
        ...(init.form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
      },
      body: init.form ? new URLSearchParams(init.form).toString() : undefined,
    });
    this.jar.store(res);
    return { res, body: await res.text(), url };
  }

  /** Follows redirects (GET) until a non-redirect or a URL for which stop() says so. */
  async follow(url: string, init: RequestInit = {}, stop: (u: string) => boolean = () => false): Promise<{ res: Response; body: string; url: string }> {
    let current = await this.request(url, init);
    for (let i = 0; i < 20 && current.res.status >= 300 && current.res.status < 400; i++) {
      const next = new URL(current.res.headers.get('location') as string, current.url).href;
      if (stop(next)) return { ...current, url: next };
      current = await this.request(next);
    }
    return current;
  }
}

export function csrfOf(html: string): string {
  const m = /name="_csrf" value="([^"]+)"/.exec(html);
  if (!m?.[1]) throw new Error('no csrf token on the page');
  return m[1];
}

export function formAction(html: string, contains: string): string {
  const re = /<form[^>]*action="([^"]+)"/g;
  for (const m of html.matchAll(re)) if (m[1]?.includes(contains)) return m[1].replace(/&amp;/g, '&');
  throw new Error(`no form posting to *${contains}*`);
}
