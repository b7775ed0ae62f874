import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../src/config.js';
import {
  DEVELOPMENT_MASTER_KEY, MasterKeyring, UnknownMasterKey, developmentMasterKeyring, isSealed, loadMasterKeyring, masterKeyId, parseMasterKey,
} from '../../src/secrets/master-key.js';

const keyA = randomBytes(32);
const keyB = randomBytes(32);

describe('MasterKeyring', () => {
  it('seals with the newest key and opens the value only in the same context', () => {
    const ring = new MasterKeyring([keyA], 'test');
    const sealed = ring.seal('pepper value', 'app_secrets:otp-pepper');
    expect(isSealed(sealed)).toBe(true);
    expect(sealed).not.toContain('pepper value');
    expect(sealed.startsWith(`sealed:v1:${masterKeyId(keyA)}:`)).toBe(true);
    expect(ring.open(sealed, 'app_secrets:otp-pepper')).toBe('pepper value');
    // Copied onto another row or purpose, it does not open.
    expect(() => ring.open(sealed, 'app_secrets:cookie-key')).toThrow();
  });

  it('refuses a tampered value', () => {
    const ring = new MasterKeyring([keyA], 'test');
    const sealed = ring.seal('signing key', 'signing_keys:k1');
    const body = Buffer.from(sealed.split(':')[3] as string, 'base64url');
    body[body.length - 1] = (body[body.length - 1] as number) ^ 1;
    const tampered = `${sealed.split(':').slice(0, 3).join(':')}:${body.toString('base64url')}`;
    expect(() => ring.open(tampered, 'signing_keys:k1')).toThrow();
  });

  it('opens with a previous key during a rotation, says which values to move, and names a key it does not hold', () => {
    const old = new MasterKeyring([keyA], 'old');
    const sealedOld = old.seal('salt', 'app_secrets:pairwise-salt');
    const rotating = new MasterKeyring([keyB, keyA], 'rotating');
    expect(rotating.open(sealedOld, 'app_secrets:pairwise-salt')).toBe('salt');
    expect(rotating.sealedWithOlderKey(sealedOld)).toBe(true);
    const sealedNew = rotating.seal('salt', 'app_secrets:pairwise-salt');
    expect(rotating.sealedWithOlderKey(sealedNew)).toBe(false);
    const newOnly = new MasterKeyring([keyB], 'new');
    expect(newOnly.open(sealedNew, 'app_secrets:pairwise-salt')).toBe('salt');
    expect(() => newOnly.open(sealedOld, 'app_secrets:pairwise-salt')).toThrow(UnknownMasterKey);
    expect(() => newOnly.open(sealedOld, 'app_secrets:pairwise-salt')).toThrow(new RegExp(masterKeyId(keyA)));
  });

  it('parses a 32-byte key in base64 or base64url and nothing else', () => {
    const key = randomBytes(32);
    expect(parseMasterKey(key.toString('base64'))).toEqual(key);
    expect(parseMasterKey(key.toString('base64url'))).toEqual(key);
    expect(parseMasterKey(randomBytes(31).toString('base64'))).toBeUndefined();
    expect(parseMasterKey('not base64 at all!')).toBeUndefined();
  });
});

describe('loadMasterKeyring', () => {
  let dir: string;
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsunagi-key-')); });
  afterEach(() => { fs.rmSync(dir, { recursive: true, force: true }); });

  it('uses TSUNAGI_MASTER_KEY, then the previous keys, when configured', () => {
    const ring = loadMasterKeyring({ nodeEnv: 'production', databaseUrl: 'postgres://db/t', dataDir: dir, masterKeys: [keyB, keyA] });
    expect(ring.currentKeyId).toBe(masterKeyId(keyB));
    expect(ring.open(new MasterKeyring([keyA], 'old').seal('x', 'c'), 'c')).toBe('x');
  });

  it('never falls back to a generated or development key in production', () => {
    expect(() => loadMasterKeyring({ nodeEnv: 'production', databaseUrl: 'postgres://db/t', dataDir: dir, masterKeys: undefined })).toThrow(/required in production/);
  });

  it('keeps the embedded database\'s key in DATA_DIR/master.key, created once with mode 0600 and then reused', () => {
    const settings = { nodeEnv: 'development', databaseUrl: undefined, dataDir: path.join(dir, 'data'), masterKeys: undefined };
    const first = loadMasterKeyring(settings);
    const file = path.join(dir, 'data', 'master.key');
    expect(first.source).toBe(file);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    const second = loadMasterKeyring(settings);
    expect(second.currentKeyId).toBe(first.currentKeyId);
    expect(second.open(first.seal('kept', 'c'), 'c')).toBe('kept');
    expect(first.currentKeyId).not.toBe(developmentMasterKeyring().currentKeyId);
  });

  it('uses the well-known development key on an external Postgres or the in-memory database outside production', () => {
    const dev = developmentMasterKeyring().currentKeyId;
    expect(loadMasterKeyring({ nodeEnv: 'development', databaseUrl: 'postgres://db/t', dataDir: dir, masterKeys: undefined }).currentKeyId).toBe(dev);
    expect(loadMasterKeyring({ nodeEnv: 'test', databaseUrl: undefined, dataDir: 'memory://', masterKeys: undefined }).currentKeyId).toBe(dev);
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('accepts the word development as a previous key, to move a development database onto a real key', () => {
    const config = loadConfig({ TSUNAGI_MASTER_KEY: keyA.toString('base64'), TSUNAGI_MASTER_KEY_PREVIOUS: 'development' });
    expect(config.masterKeys).toEqual([keyA, DEVELOPMENT_MASTER_KEY]);
    const ring = loadMasterKeyring(config);
    expect(ring.open(developmentMasterKeyring().seal('moved', 'c'), 'c')).toBe('moved');
  });
});
