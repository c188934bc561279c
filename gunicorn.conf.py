"""gunicorn's settings for the web service (read from the working directory by `gunicorn crm.wsgi`).

Two sync processes by default: on the 2-core benchmark machine they served the customer detail
at 271-306 requests/s with p95 18-20 ms, against 241-281 and 22-30 ms for 2 processes x 2
threads (BENCHMARKS.md, "API under load"). GUNICORN_THREADS > 1 switches to threaded workers
(keep-alive, more requests in flight per process); each thread holds its own persistent
database connection (DB_CONN_MAX_AGE), so the database sees processes x threads connections.
"""
import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
worker_class = "gthread" if threads > 1 else "sync"
keepalive = 5
timeout = 60
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-")
