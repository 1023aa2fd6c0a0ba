/** Worker-thread entry for `sluice perf --workers N`: one PerfAgent driven by agent-handle.ts. */
import { parentPort } from 'node:worker_threads';
import type { WorkerReply, WorkerRequest } from './agent-handle.js';
import { PerfAgent } from './perf-agent.js';

const port = parentPort;
if (port === null) throw new Error('perf-worker.js runs only as a worker thread');
let agent: PerfAgent | null = null;
const reply = (m: WorkerReply): void => port.postMessage(m);
const fail = (e: unknown): void => reply({ type: 'error', message: (e as Error).message ?? String(e) });

port.on('message', (m: WorkerRequest) => {
  switch (m.type) {
    case 'setup':
      agent = new PerfAgent(m.plan, fail);
      agent.setup().then(() => reply({ type: 'setup' }), fail);
      break;
    case 'start':
      agent?.start();
      break;
    case 'take':
      if (agent !== null) reply({ type: 'take', take: agent.take() });
      break;
    case 'stop':
      agent?.stop();
      break;
    case 'close':
      (agent?.close() ?? Promise.resolve()).then(() => reply({ type: 'close' }), () => reply({ type: 'close' }));
      break;
  }
});
