"""RabbitMQ tutorial 2 with pika: durable queue, persistent messages, prefetch 1, manual acks,
two consumers on separate connections; every task is done exactly once."""
import pika

from _common import check, params

N = 40
QUEUE = "py-task-queue"

producer = pika.BlockingConnection(params())
pch = producer.channel()
pch.queue_declare(queue=QUEUE, durable=True)
for i in range(N):
    pch.basic_publish(
        exchange="",
        routing_key=QUEUE,
        body=("task %d" % i).encode(),
        properties=pika.BasicProperties(delivery_mode=2),
    )

done = {}
workers = []
for name in ("w1", "w2"):
    conn = pika.BlockingConnection(params())
    ch = conn.channel()
    ch.queue_declare(queue=QUEUE, durable=True)
    ch.basic_qos(prefetch_count=1)
    workers.append((name, conn, ch))

in_flight = {}


def make_callback(name):
    def cb(chan, method, properties, body):
        check(properties.delivery_mode == 2, "persistent delivery mode")
        check(in_flight.get(name, 0) == 0, "prefetch 1 means one unacked message per worker")
        in_flight[name] = 1
        done.setdefault(body, []).append(name)
        in_flight[name] = 0
        chan.basic_ack(delivery_tag=method.delivery_tag)

    return cb


for name, conn, ch in workers:
    ch.basic_consume(queue=QUEUE, on_message_callback=make_callback(name))

# Drive both blocking connections until everything is done.
for _ in range(2000):
    if sum(len(v) for v in done.values()) >= N:
        break
    for _, conn, _ in workers:
        conn.process_data_events(time_limit=0.01)

check(sorted(done) == sorted(("task %d" % i).encode() for i in range(N)), "all tasks done: %d" % len(done))
check(all(len(v) == 1 for v in done.values()), "each task exactly once")
per_worker = {}
for v in done.values():
    per_worker[v[0]] = per_worker.get(v[0], 0) + 1
check(len(per_worker) == 2, "both workers got work: %r" % per_worker)
q = pch.queue_declare(queue=QUEUE, durable=True, passive=True)
check(q.method.message_count == 0, "queue drained")
pch.queue_delete(queue=QUEUE)
for _, conn, _ in workers:
    conn.close()
producer.close()
print("OK", per_worker)
