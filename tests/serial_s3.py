"""moto's S3 server answering one request at a time, for tests that race conditional writes.

    python tests/serial_s3.py PORT

moto applies If-None-Match / If-Match by reading the current object and then
writing (moto/s3/responses.py, put_object), two steps with nothing between
them held, and its own server runs each request on a thread of its own: two
racing conditional PUTs can both pass the read. S3, MinIO and GCS apply a
precondition and its write as one step. Served one request at a time, moto's
steps are one step too, which is what a test of "exactly one of N racing
drivers wins" needs from its store. Everything else is moto's own server.
"""
import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple


def serial(app):
    lock = threading.Lock()

    def serve(environ, start_response):
        with lock:  # the whole response is made inside: moto's answers are not streamed
            return list(app(environ, start_response))

    return serve


if __name__ == "__main__":
    run_simple("127.0.0.1", int(sys.argv[1]), serial(DomainDispatcherApplication(create_backend_app)),
               threaded=True, request_handler=MotoRequestHandler)
