"""Transactions with pika: publishes appear on commit and vanish on rollback; acks too."""
import pika

from _common import check, params

conn = pika.BlockingConnection(params())
ch = conn.channel()
q = ch.queue_declare(queue="", exclusive=True).method.queue
ch.tx_select()
ch.basic_publish(exchange="", routing_key=q, body=b"a")
ch.basic_publish(exchange="", routing_key=q, body=b"b")
ch.tx_rollback()
ch.basic_publish(exchange="", routing_key=q, body=b"c")
ch.tx_commit()
obs = conn.channel()
check(obs.queue_declare(queue=q, passive=True).method.message_count == 1, "only the committed publish")
method, props, body = ch.basic_get(queue=q)
check(body == b"c", "got %r" % body)
ch.basic_ack(method.delivery_tag)
ch.tx_rollback()
ch.close()  # the rolled-back ack leaves the message unacked: it goes back
method, props, body = obs.basic_get(queue=q, auto_ack=True)
check(body == b"c" and method.redelivered, "requeued after rolled-back ack")
conn.close()
print("OK")
