"""Serves moto's DynamoDB/SQS emulator on a free loopback port, one request at a time.

moto's own server handles requests on threads with no lock, and its TransactWriteItems copies whole
tables and restores them on cancellation, so concurrent transactions are not isolated there (stock 1
with 8 concurrent buyers sold 2 in 15 of 150 trials). Wrapping the WSGI app in one lock makes each
request atomic, as DynamoDB's transactions are.

Prints the port on stdout, then serves until its stdin closes (the test process that started it died
or finished), so no emulator outlives its tests.
"""

import os
import sys
import threading

from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

app = DomainDispatcherApplication(create_backend_app)
lock = threading.Lock()


def serialized(environ, start_response):
    with lock:
        # Consume the body inside the lock: the response may be generated lazily.
        return list(app(environ, start_response))


def exit_when_parent_goes():
    sys.stdin.read()
    os._exit(0)


def main():
    host = "127.0.0.1"
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = make_server(host, port, serialized, threaded=True)
    print(server.server_port, flush=True)
    if not (len(sys.argv) > 2 and sys.argv[2] == "--no-stdin-watch"):
        threading.Thread(target=exit_when_parent_goes, daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
