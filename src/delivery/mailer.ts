import nodemailer, { type Transporter } from 'nodemailer';
import type { Logger } from 'pino';
import { withDeadline } from '../failures/dependency.js';

export interface OutgoingMail {
  to: string;
  subject: string;
  text: string;
}

export interface Mailer {
  send(mail: OutgoingMail): Promise<void>;
}

export class MailDeliveryFailed extends Error {
  constructor(cause: unknown) {
    super('the mail could not be handed to the mail server', { cause });
    this.name = 'MailDeliveryFailed';
  }
}

export class SmtpMailer implements Mailer {
  private readonly transport: Transporter;

  /** timeoutMs (SMTP_TIMEOUT_MS) bounds connecting, the greeting, each silence on the socket, and the whole send. */
  constructor(smtpUrl: string, private readonly from: string, private readonly timeoutMs = 5000) {
    const url = new URL(smtpUrl);
    for (const name of ['connectionTimeout', 'greetingTimeout', 'socketTimeout']) url.searchParams.set(name, String(timeoutMs));
    this.transport = nodemailer.createTransport(url.toString());
  }

  async send(mail: OutgoingMail): Promise<void> {
    try {
      // A server that answers each command just before the socket deadline would otherwise hold the page far longer.
      await withDeadline(this.transport.sendMail({ from: this.from, to: mail.to, subject: mail.subject, text: mail.text }), this.timeoutMs * 2, 'the mail server');
    } catch (err) {
      throw new MailDeliveryFailed(err);
    }
  }

  close(): void {
    this.transport.close();
  }
}

export interface OutboxEntry {
  channel: 'email' | 'sms';
  to: string;
  subject: string;
  text: string;
  at: Date;
}

/** Development outbox: what would have been sent, printed to the console and listed at /dev/outbox. */
export class DevOutbox {
  private readonly entries: OutboxEntry[] = [];

  constructor(private readonly log: Logger | undefined, private readonly capacity = 100) {}

  add(entry: OutboxEntry): void {
    this.entries.unshift(entry);
    this.entries.length = Math.min(this.entries.length, this.capacity);
    // The dev outbox exists to show the message, code included; it is never used in production.
    this.log?.info({ outbox: entry.channel, to: entry.to }, `[dev outbox] ${entry.subject}\n${entry.text}`);
  }

  list(): readonly OutboxEntry[] {
    return this.entries;
  }
}

export class OutboxMailer implements Mailer {
  constructor(private readonly outbox: DevOutbox) {}

  async send(mail: OutgoingMail): Promise<void> {
    this.outbox.add({ channel: 'email', ...mail, at: new Date() });
  }
}
