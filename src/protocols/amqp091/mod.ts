export { AmqpServer, type AmqpServerOptions } from './server.js';
export { amqpMessageFormat } from './amqp-message-format.js';
