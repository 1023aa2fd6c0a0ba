/** The embedding API: `import { startBroker } from 'sluicemq'`. */
export { startBroker, type StartedBroker } from './server/mod.js';
export { loadConfig, DEFAULT_CONFIG, type SluiceConfig } from './server/mod.js';
