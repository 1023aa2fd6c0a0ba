/**
 * The broker's configuration: defaults, then a JSON config file, then environment variables,
 * then command-line flags, each overriding the one before.
 */
import { readFileSync } from 'node:fs';

export interface SluiceConfig {
  dataDir: string;
  host: string;
  amqpPort: number;
  frameMax: number;
  channelMax: number;
  heartbeat: number;
  /** ms a client has from TCP accept to connection.open (RabbitMQ's handshake_timeout). */
  handshakeTimeout: number;
  maxMessageSize: number;
  logLevel: string;
  /** RabbitMQ-style policies: { vhost, name, pattern, 'apply-to', priority, definition }. */
  policies: Array<Record<string, unknown>>;
}

export const DEFAULT_CONFIG: SluiceConfig = {
  dataDir: './data',
  host: '0.0.0.0',
  amqpPort: 5672,
  frameMax: 131072,
  channelMax: 2047,
  heartbeat: 60,
  handshakeTimeout: 10_000,
  maxMessageSize: 128 * 1024 * 1024,
  logLevel: 'info',
  policies: [],
};

/** Environment variable for each setting: SLUICE_DATA_DIR, SLUICE_AMQP_PORT, ... */
export function envName(key: keyof SluiceConfig): string {
  return `SLUICE_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}

function coerce(key: keyof SluiceConfig, raw: unknown): unknown {
  if (key === 'policies') {
    const v = typeof raw === 'string' ? (JSON.parse(raw) as unknown) : raw;
    if (!Array.isArray(v)) throw new Error(`invalid value for policies: expected an array`);
    return v;
  }
  const t = typeof DEFAULT_CONFIG[key];
  if (t === 'number') {
    const n = Number(raw);
    if (!Number.isFinite(n) || n < 0) throw new Error(`invalid value for ${key}: ${String(raw)}`);
    return n;
  }
  return String(raw);
}

export function loadConfig(flags: Partial<Record<keyof SluiceConfig, unknown>> & { config?: string }, env: NodeJS.ProcessEnv = process.env): SluiceConfig {
  const cfg: SluiceConfig = { ...DEFAULT_CONFIG };
  const file = flags.config ?? env['SLUICE_CONFIG'];
  if (file !== undefined) {
    const data = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    for (const [k, v] of Object.entries(data)) {
      if (!(k in DEFAULT_CONFIG)) throw new Error(`unknown setting '${k}' in ${file}`);
      (cfg as unknown as Record<string, unknown>)[k] = coerce(k as keyof SluiceConfig, v);
    }
  }
  for (const key of Object.keys(DEFAULT_CONFIG) as Array<keyof SluiceConfig>) {
    const e = env[envName(key)];
    if (e !== undefined && e !== '') (cfg as unknown as Record<string, unknown>)[key] = coerce(key, e);
    const f = flags[key];
    if (f !== undefined) (cfg as unknown as Record<string, unknown>)[key] = coerce(key, f);
  }
  return cfg;
}
