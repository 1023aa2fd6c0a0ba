/**
 * How the coordinator drives a PerfAgent: directly in this thread, or in a worker thread over
 * postMessage (perf-worker.ts answers each request with a message of the same type).
 */
import { Worker } from 'node:worker_threads';
import { PerfAgent, type AgentPlan, type AgentTake } from './perf-agent.js';

export interface AgentHandle {
  setup(): Promise<void>;
  start(): void;
  take(): Promise<AgentTake>;
  stop(): void;
  close(): Promise<void>;
}

export class LocalAgent implements AgentHandle {
  #agent: PerfAgent;

  constructor(plan: AgentPlan, onError: (e: Error) => void) {
    this.#agent = new PerfAgent(plan, onError);
  }

  setup(): Promise<void> {
    return this.#agent.setup();
  }

  start(): void {
    this.#agent.start();
  }

  take(): Promise<AgentTake> {
    return Promise.resolve(this.#agent.take());
  }

  stop(): void {
    this.#agent.stop();
  }

  close(): Promise<void> {
    return this.#agent.close();
  }
}

export type WorkerRequest = { type: 'setup'; plan: AgentPlan } | { type: 'start' } | { type: 'take' } | { type: 'stop' } | { type: 'close' };
export type WorkerReply =
  | { type: 'setup' }
  | { type: 'take'; take: AgentTake }
  | { type: 'close' }
  | { type: 'error'; message: string };

export class WorkerAgent implements AgentHandle {
  #worker: Worker;
  #plan: AgentPlan;
  #waiting = new Map<string, { resolve: (v: WorkerReply) => void; reject: (e: Error) => void }>();

  constructor(plan: AgentPlan, onError: (e: Error) => void) {
    this.#plan = plan;
    this.#worker = new Worker(new URL('./perf-worker.js', import.meta.url));
    this.#worker.on('message', (m: WorkerReply) => {
      if (m.type === 'error') {
        const err = new Error(m.message);
        if (this.#waiting.has('setup')) this.#settle('setup', err);
        else onError(err);
        return;
      }
      this.#settle(m.type, m);
    });
    this.#worker.on('error', (e) => onError(e));
  }

  #settle(type: string, v: WorkerReply | Error): void {
    const w = this.#waiting.get(type);
    if (w === undefined) return;
    this.#waiting.delete(type);
    if (v instanceof Error) w.reject(v);
    else w.resolve(v);
  }

  #request(req: WorkerRequest): Promise<WorkerReply> {
    return new Promise((resolve, reject) => {
      this.#waiting.set(req.type, { resolve, reject });
      this.#worker.postMessage(req);
    });
  }

  async setup(): Promise<void> {
    await this.#request({ type: 'setup', plan: this.#plan });
  }

  start(): void {
    this.#worker.postMessage({ type: 'start' } satisfies WorkerRequest);
  }

  async take(): Promise<AgentTake> {
    const r = await this.#request({ type: 'take' });
    return (r as { type: 'take'; take: AgentTake }).take;
  }

  stop(): void {
    this.#worker.postMessage({ type: 'stop' } satisfies WorkerRequest);
  }

  async close(): Promise<void> {
    const timer = setTimeout(() => this.#settle('close', { type: 'close' }), 5000);
    await this.#request({ type: 'close' });
    clearTimeout(timer);
    await this.#worker.terminate();
  }
}
