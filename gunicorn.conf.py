"""gunicorn's settings for the web service (read from the working directory by `gunicorn crm.wsgi`).

Two processes with two threads each: a request waiting on PostgreSQL or Redis leaves the CPU
to the other thread of its process, and kept-alive connections spare API clients a TCP
handshake per request. Each thread holds its own persistent database connection
(DB_CONN_MAX_AGE), so the database sees workers x threads connections.
"""
import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "2"))
keepalive = 5
timeout = 60
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-")
