"""RabbitMQ tutorial 1 with pika: send "Hello World!" to queue 'py-hello' and receive it."""
import pika

from _common import check, params

conn = pika.BlockingConnection(params())
ch = conn.channel()
ch.queue_declare(queue="py-hello")
ch.basic_publish(exchange="", routing_key="py-hello", body=b"Hello World!")

received = []


def on_message(chan, method, properties, body):
    received.append((method.routing_key, method.redelivered, body))
    chan.stop_consuming()


ch.basic_consume(queue="py-hello", on_message_callback=on_message, auto_ack=True)
conn.call_later(5, ch.stop_consuming)
ch.start_consuming()
check(received == [("py-hello", False, b"Hello World!")], "received %r" % received)
conn.close()
print("OK")
