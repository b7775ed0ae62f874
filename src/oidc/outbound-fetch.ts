import dns from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { Readable } from 'node:stream';
import type { OutboundAllowList } from '../config.js';

// oidc-provider calls out to relying parties (back-channel logout, sector_identifier_uri, jwks_uri).
// Its own fetch refuses every loopback, RFC 1918 and other special-use address, so a relying party
// inside a private network never gets its logout token. This fetch keeps that refusal (SSRF: a
// registered URL must not reach internal services) except for the hosts and networks the operator
// names in OUTBOUND_ALLOW_PRIVATE. The check is made on the address actually connected to, after
// DNS, so a public name that resolves to a private address is refused too.

const SPECIAL_USE_IPV4: Array<[string, number]> = [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.0.2.0', 24], ['192.31.196.0', 24], ['192.52.193.0', 24], ['192.88.99.0', 24], ['192.168.0.0', 16],
  ['192.175.48.0', 24], ['198.18.0.0', 15], ['198.51.100.0', 24], ['203.0.113.0', 24], ['240.0.0.0', 4],
];
const SPECIAL_USE_IPV6: Array<[string, number]> = [
  ['::', 128], ['::1', 128], ['64:ff9b::', 96], ['64:ff9b:1::', 48], ['100::', 64], ['100:0:0:1::', 64], ['2001::', 23],
  ['2001:db8::', 32], ['2002::', 16], ['2620:4f:8000::', 48], ['3fff::', 20], ['5f00::', 16], ['fc00::', 7], ['fe80::', 10],
];

const specialUse = new net.BlockList();
for (const [address, prefix] of SPECIAL_USE_IPV4) specialUse.addSubnet(address, prefix, 'ipv4');
for (const [address, prefix] of SPECIAL_USE_IPV6) specialUse.addSubnet(address, prefix, 'ipv6');

/** An IPv4-mapped IPv6 address (::ffff:10.0.0.1) is judged as the IPv4 address it carries. */
function normalise(address: string): { address: string; family: 'ipv4' | 'ipv6' } {
  const lower = address.toLowerCase();
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
  if (mapped?.[1]) return { address: mapped[1], family: 'ipv4' };
  return { address: lower, family: net.isIP(lower) === 6 ? 'ipv6' : 'ipv4' };
}

export function isSpecialUseAddress(address: string): boolean {
  const a = normalise(address);
  return specialUse.check(a.address, a.family);
}

export class OutboundRequestRefused extends Error {
  constructor(readonly host: string, readonly address: string) {
    super(`${host} resolves to ${address}, a private or special-use address not listed in OUTBOUND_ALLOW_PRIVATE`);
    this.name = 'OutboundRequestRefused';
  }
}

export type OutboundFetch = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

export function outboundFetch(allow: OutboundAllowList): OutboundFetch {
  const allowedNetworks = new net.BlockList();
  for (const n of allow.networks) allowedNetworks.addSubnet(n.address, n.prefix, n.family);
  const permitted = (host: string, address: string): boolean => {
    if (!isSpecialUseAddress(address)) return true;
    if (allow.hosts.includes(host)) return true;
    const a = normalise(address);
    return allowedNetworks.check(a.address, a.family);
  };

  return async (input, init = {}) => {
    const url = new URL(input instanceof Request ? input.url : input);
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new TypeError(`cannot fetch ${url.protocol} URLs`);
    const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
    if (net.isIP(host) && !permitted(host, host)) throw new OutboundRequestRefused(host, host);

    // Only permitted addresses are offered to the connection (Node calls this with all: true when it
    // tries several addresses in turn).
    const lookup: net.LookupFunction = (hostname, options, callback) => {
      dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
        if (err) return callback(err, '', 4);
        const usable = addresses.filter((a) => permitted(host, a.address));
        if (usable.length === 0) return callback(new OutboundRequestRefused(host, addresses[0]?.address ?? 'nothing'), '', 4);
        if ((options as { all?: boolean }).all) return (callback as unknown as (e: null, a: dns.LookupAddress[]) => void)(null, usable);
        const first = usable[0] as dns.LookupAddress;
        return callback(null, first.address, first.family);
      });
    };

    const headers: Record<string, string> = {};
    new Headers(init.headers).forEach((value, name) => { headers[name] = value; });
    const body = init.body === undefined || init.body === null ? undefined
      : typeof init.body === 'string' || init.body instanceof URLSearchParams ? String(init.body)
        : Buffer.from(await new Response(init.body).arrayBuffer());
    if (body !== undefined) headers['content-length'] = String(Buffer.byteLength(body));
    const method = (init.method ?? 'GET').toUpperCase();
    const transport = url.protocol === 'https:' ? https : http;

    return new Promise<Response>((resolve, reject) => {
      const req = transport.request(url, { method, headers, lookup, agent: false, ...(init.signal ? { signal: init.signal } : {}) }, (res) => {
        const responseHeaders = new Headers();
        for (const [name, value] of Object.entries(res.headers)) {
          for (const v of Array.isArray(value) ? value : value === undefined ? [] : [value]) responseHeaders.append(name, v);
        }
        const status = res.statusCode ?? 502;
        const empty = method === 'HEAD' || status === 204 || status === 205 || status === 304;
        if (empty) res.resume();
        resolve(new Response(empty ? null : (Readable.toWeb(res) as unknown as ReadableStream<Uint8Array>), { status, statusText: res.statusMessage ?? '', headers: responseHeaders }));
      });
      // The connected address is checked again: what DNS said is what is reached.
      req.on('socket', (socket) => {
        socket.once('connect', () => {
          const address = socket.remoteAddress;
          if (address && !permitted(host, address)) req.destroy(new OutboundRequestRefused(host, address));
        });
      });
      req.on('error', reject);
      req.end(body);
    });
  };
}
