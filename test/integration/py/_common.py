"""Shared bits for the pika scripts: connect to the broker on the port given as argv[1]."""
import sys

import pika


def params():
    port = int(sys.argv[1])
    return pika.ConnectionParameters(
        host="127.0.0.1",
        port=port,
        credentials=pika.PlainCredentials("guest", "guest"),
        heartbeat=0,
        blocked_connection_timeout=10,
    )


def check(cond, what):
    if not cond:
        print("FAIL: " + what, file=sys.stderr)
        sys.exit(1)
