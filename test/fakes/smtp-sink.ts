import type { AddressInfo } from 'node:net';
import { simpleParser } from 'mailparser';
import { SMTPServer } from 'smtp-server';

export interface ReceivedMail { to: string[]; from: string; subject: string; text: string }

/** A real SMTP server on loopback that keeps what it receives, for tests to read codes from. */
export class SmtpSink {
  readonly messages: ReceivedMail[] = [];
  private readonly waiters: Array<{ to: string; resolve: (m: ReceivedMail) => void }> = [];
  private server: SMTPServer;
  port = 0;
  /** When true, the server refuses every message (a mail server that is down for mail). */
  rejecting = false;

  constructor() {
    this.server = new SMTPServer({
      authOptional: true,
      disabledCommands: ['STARTTLS'],
      logger: false,
      onData: (stream, session, callback) => {
        if (this.rejecting) {
          stream.resume();
          stream.on('end', () => callback(Object.assign(new Error('mailbox unavailable'), { responseCode: 550 })));
          return;
        }
        simpleParser(stream).then((parsed) => {
          const mail: ReceivedMail = {
            to: session.envelope.rcptTo.map((r) => r.address.toLowerCase()),
            from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
            subject: parsed.subject ?? '',
            text: parsed.text ?? '',
          };
          this.messages.push(mail);
          for (const w of [...this.waiters]) {
            if (mail.to.includes(w.to.toLowerCase())) {
              this.waiters.splice(this.waiters.indexOf(w), 1);
              w.resolve(mail);
            }
          }
          callback();
        }, callback);
      },
    });
  }

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', () => resolve()));
    this.port = (this.server.server.address() as AddressInfo).port;
    return `smtp://127.0.0.1:${this.port}`;
  }

  /** The next message to this address (or one already received and not yet taken). */
  nextMailTo(address: string, timeoutMs = 10_000): Promise<ReceivedMail> {
    const i = this.messages.findIndex((m) => m.to.includes(address.toLowerCase()));
    if (i >= 0) return Promise.resolve(this.messages.splice(i, 1)[0] as ReceivedMail);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no mail to ${address} within ${timeoutMs}ms`)), timeoutMs);
      this.waiters.push({ to: address, resolve: (m) => { clearTimeout(timer); this.messages.splice(this.messages.indexOf(m), 1); resolve(m); } });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

export function codeFrom(mail: ReceivedMail): string {
  const m = /\b(\d{6})\b/.exec(mail.text);
  if (!m?.[1]) throw new Error(`no 6-digit code in mail: ${mail.text}`);
  return m[1];
}
