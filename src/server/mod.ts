export { startBroker, type StartedBroker } from './start-broker.js';
export { loadConfig, DEFAULT_CONFIG, envName, type SluiceConfig } from './config.js';
