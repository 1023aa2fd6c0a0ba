"""Publisher confirms with pika: every publish to a durable queue is confirmed; an unroutable
mandatory publish raises UnroutableError; a publish to a missing exchange closes the channel
with 404."""
import pika
import pika.exceptions

from _common import check, params

QUEUE = "py-confirms"
conn = pika.BlockingConnection(params())
ch = conn.channel()
ch.confirm_delivery()
ch.queue_declare(queue=QUEUE, durable=True)
for i in range(200):
    # BlockingChannel in confirm mode waits for the ack and raises on nack.
    ch.basic_publish(
        exchange="",
        routing_key=QUEUE,
        body=("c%d" % i).encode(),
        properties=pika.BasicProperties(delivery_mode=2),
    )
q = ch.queue_declare(queue=QUEUE, durable=True, passive=True)
check(q.method.message_count == 200, "200 confirmed messages, got %d" % q.method.message_count)

try:
    ch.basic_publish(exchange="amq.direct", routing_key="nowhere", body=b"x", mandatory=True)
    check(False, "mandatory unroutable publish should raise UnroutableError")
except pika.exceptions.UnroutableError as e:
    check(len(e.messages) == 1 and e.messages[0].body == b"x", "returned message %r" % e.messages)

try:
    ch.basic_publish(exchange="py-no-such-exchange", routing_key="k", body=b"x")
    check(False, "publish to a missing exchange should close the channel")
except pika.exceptions.ChannelClosedByBroker as e:
    check(e.reply_code == 404, "reply code %r" % e.reply_code)

ch2 = conn.channel()
ch2.queue_delete(queue=QUEUE)
conn.close()
print("OK")
