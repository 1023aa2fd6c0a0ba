#!/usr/bin/env node
/**
 * The `sluice` command. `sluice start` runs a broker in the foreground until SIGTERM or
 * SIGINT, which close every connection with 320 CONNECTION_FORCED and flush storage.
 * `sluice perf` is the load generator (src/cli/perf/), which takes its own flags. Both are
 * loaded on demand, so the load generator never loads the broker.
 */
import { parseArgs } from 'node:util';
import type { SluiceConfig } from '../server/mod.js';

const HELP = `Usage: sluice <command> [options]

Commands:
  start            run a broker in the foreground
  perf             load generator for any AMQP 0-9-1 broker (sluice perf --help)

Options for start (each also has an environment variable):
  --data-dir DIR      where data is stored (SLUICE_DATA_DIR, default ./data)
  --amqp-port PORT    AMQP 0-9-1 port, 0 picks a free one (SLUICE_AMQP_PORT, default 5672)
  --host HOST         address to listen on (SLUICE_HOST, default 0.0.0.0)
  --config FILE       JSON file with any of the settings (SLUICE_CONFIG)
  --log-level LEVEL   trace|debug|info|warn|error|silent (SLUICE_LOG_LEVEL, default info)
  -h, --help          show this help
`;

async function main(argv: string[]): Promise<number> {
  if (argv[0] === 'perf') return (await import('./perf/mod.js')).runPerf(argv.slice(1));
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      'data-dir': { type: 'string' },
      'amqp-port': { type: 'string' },
      host: { type: 'string' },
      config: { type: 'string' },
      'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const command = positionals[0];
  if (values.help || command === undefined || command === 'help') {
    process.stdout.write(HELP);
    return command === undefined && !values.help ? 1 : 0;
  }
  if (command !== 'start') {
    process.stderr.write(`sluice: unknown command '${command}'\n\n${HELP}`);
    return 2;
  }
  const flags: Partial<Record<keyof SluiceConfig, unknown>> & { config?: string } = {
    dataDir: values['data-dir'],
    amqpPort: values['amqp-port'],
    host: values.host,
    logLevel: values['log-level'],
  };
  if (values.config !== undefined) flags.config = values.config;
  const { loadConfig, startBroker } = await import('../server/mod.js');
  const cfg = loadConfig(flags);
  const started = await startBroker(cfg);
  process.stdout.write(`sluice: AMQP 0-9-1 listening on ${cfg.host}:${started.amqpPort}, data in ${cfg.dataDir}\n`);
  await new Promise<void>((resolve) => {
    const stop = (sig: string): void => {
      process.stdout.write(`sluice: ${sig} received, shutting down\n`);
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  await started.close();
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`sluice: ${(err as Error).message}\n`);
    process.exit(1);
  },
);
