import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

// Secrets at rest (signing keys, the OTP pepper, the upstream token key, the pairwise salt, cookie
// keys, client secrets that must stay reversible) are sealed with a master key that is never in the
// database: a dump alone opens none of them. The newest key seals; older keys (during a rotation)
// only open, and `secrets reencrypt` moves every sealed value to the newest key.

export const MASTER_KEY_BYTES = 32;
const SEALED_PREFIX = 'sealed:v1:';
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** A sealed value names the master key that sealed it, so rotation needs no trial decryption. */
export function masterKeyId(key: Buffer): string {
  return createHash('sha256').update('tsunagi master key id\0').update(key).digest('base64url').slice(0, 11);
}

export function isSealed(value: unknown): value is string {
  return typeof value === 'string' && value.startsWith(SEALED_PREFIX);
}

export class UnknownMasterKey extends Error {
  constructor(readonly keyId: string) {
    super(`a secret in the database was sealed with master key ${keyId}, which is not configured `
      + '(set TSUNAGI_MASTER_KEY, or list the old key in TSUNAGI_MASTER_KEY_PREVIOUS until `secrets reencrypt` has run)');
    this.name = 'UnknownMasterKey';
  }
}

/** Parses a 32-byte key written as base64 or base64url; undefined when it is not one. */
export function parseMasterKey(text: string): Buffer | undefined {
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(text)) return undefined;
  const key = Buffer.from(text.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  return key.length === MASTER_KEY_BYTES ? key : undefined;
}

export class MasterKeyring {
  private readonly byId: Map<string, Buffer>;
  readonly currentKeyId: string;

  /** `keys[0]` seals; every key opens. */
  constructor(keys: Buffer[], readonly source: string) {
    const [current] = keys;
    if (!current || keys.some((k) => k.length !== MASTER_KEY_BYTES)) throw new Error(`a master key is ${MASTER_KEY_BYTES} bytes`);
    this.byId = new Map(keys.map((k) => [masterKeyId(k), k]));
    this.currentKeyId = masterKeyId(current);
  }

  /**
   * AES-256-GCM under the newest key. `context` (what the value is and which row holds it) is the
   * associated data: a sealed value copied to another row or purpose does not open.
   */
  seal(plaintext: string | Buffer, context: string): string {
    const key = this.byId.get(this.currentKeyId) as Buffer;
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', key, iv);
    cipher.setAAD(Buffer.from(context));
    const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return `${SEALED_PREFIX}${this.currentKeyId}:${Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64url')}`;
  }

  openBuffer(sealed: string, context: string): Buffer {
    const match = /^sealed:v1:([A-Za-z0-9_-]{11}):([A-Za-z0-9_-]+)$/.exec(sealed);
    if (!match) throw new Error(`not a sealed value (${context})`);
    const key = this.byId.get(match[1] as string);
    if (!key) throw new UnknownMasterKey(match[1] as string);
    const raw = Buffer.from(match[2] as string, 'base64url');
    if (raw.length < IV_BYTES + TAG_BYTES) throw new Error(`sealed value too short (${context})`);
    const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, IV_BYTES));
    decipher.setAAD(Buffer.from(context));
    decipher.setAuthTag(raw.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
    return Buffer.concat([decipher.update(raw.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]);
  }

  open(sealed: string, context: string): string {
    return this.openBuffer(sealed, context).toString('utf8');
  }

  /** True when the value is sealed with an older key (and `secrets reencrypt` should move it). */
  sealedWithOlderKey(sealed: string): boolean {
    return isSealed(sealed) && !sealed.startsWith(`${SEALED_PREFIX}${this.currentKeyId}:`);
  }
}

/**
 * The well-known key of development and tests on an external Postgres with no TSUNAGI_MASTER_KEY:
 * every process pointed at that database agrees on it without configuration. It is public, so it
 * protects nothing; production refuses to start without TSUNAGI_MASTER_KEY.
 */
export const DEVELOPMENT_MASTER_KEY = createHash('sha256').update('tsunagi development master key: not a secret').digest();

export function developmentMasterKeyring(): MasterKeyring {
  return new MasterKeyring([DEVELOPMENT_MASTER_KEY], 'development key (not secret)');
}

export interface MasterKeySettings {
  nodeEnv: string;
  databaseUrl: string | undefined;
  dataDir: string;
  /** TSUNAGI_MASTER_KEY then TSUNAGI_MASTER_KEY_PREVIOUS, parsed by loadConfig. */
  masterKeys: Buffer[] | undefined;
}

export const MASTER_KEY_FILE = 'master.key';

/**
 * The keyring for this process. Configured keys win. Otherwise (never in production, which requires
 * TSUNAGI_MASTER_KEY) the key goes with the database it protects: the embedded database in DATA_DIR
 * keeps its key beside it in DATA_DIR/master.key (created on first start, mode 0600); an external
 * Postgres, or the in-memory test database, uses the development key.
 */
export function loadMasterKeyring(settings: MasterKeySettings): MasterKeyring {
  if (settings.masterKeys?.length) return new MasterKeyring(settings.masterKeys, 'TSUNAGI_MASTER_KEY');
  if (settings.nodeEnv === 'production') throw new Error('TSUNAGI_MASTER_KEY is required in production');
  if (settings.databaseUrl || settings.dataDir === 'memory://') return developmentMasterKeyring();
  const file = path.resolve(settings.dataDir, MASTER_KEY_FILE);
  return new MasterKeyring([readOrCreateKeyFile(file)], file);
}

function readOrCreateKeyFile(file: string): Buffer {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  if (!fs.existsSync(file)) {
    // Written whole to a temporary name, then linked: link fails if the name exists, so two
    // processes starting together on a new data folder agree on the first key, never a half-written one.
    const temporary = `${file}.${process.pid}.${randomBytes(4).toString('hex')}`;
    fs.writeFileSync(temporary, `${randomBytes(MASTER_KEY_BYTES).toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
    try {
      fs.linkSync(temporary, file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    } finally {
      fs.rmSync(temporary, { force: true });
    }
  }
  const key = parseMasterKey(fs.readFileSync(file, 'utf8').trim());
  if (!key) throw new Error(`${file} does not hold a 32-byte base64 master key`);
  return key;
}
