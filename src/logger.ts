import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { service: 'tsunagi' },
    // Belt and braces: these never belong in a log line even if someone logs a whole object.
    redact: { paths: ['code', 'password', 'client_secret', 'authorization', 'cookie', '*.code', '*.client_secret', 'req.headers.authorization', 'req.headers.cookie'], censor: '[redacted]' },
  });
}
