export { AmqpServer, type AmqpServerOptions } from './server.js';
