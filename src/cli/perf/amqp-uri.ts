/** amqp://user:pass@host:port/vhost, as RabbitMQ's URI spec reads it (vhost percent-decoded). */
export interface AmqpUri {
  host: string;
  port: number;
  user: string;
  password: string;
  vhost: string;
}

export function parseAmqpUri(uri: string): AmqpUri {
  const u = new URL(uri);
  if (u.protocol !== 'amqp:') throw new Error(`unsupported URI scheme '${u.protocol}' (only amqp:// is)`);
  const path = u.pathname;
  return {
    host: u.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1',
    port: u.port === '' ? 5672 : Number(u.port),
    user: u.username === '' ? 'guest' : decodeURIComponent(u.username),
    password: u.password === '' ? 'guest' : decodeURIComponent(u.password),
    vhost: path === '' || path === '/' ? '/' : decodeURIComponent(path.slice(1)),
  };
}
