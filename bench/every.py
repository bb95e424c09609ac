#!/usr/bin/env python3
"""every.py URL MS: GETs URL every MS milliseconds on one kept-alive connection until SIGTERM,
then prints how many answers it read.

A Prometheus server scrapes this way: one process, one connection, a request per interval.
A shell loop of `curl; sleep` forks two processes per request instead, which on a small
machine costs more CPU than the request it makes, so it would measure the client, not the
server.
"""
import http.client
import signal
import sys
import time
import urllib.parse

url, interval = urllib.parse.urlsplit(sys.argv[1]), int(sys.argv[2]) / 1000
path = url.path + ("?" + url.query if url.query else "")
answers = 0
running = True


def stop(*_):
    global running
    running = False


signal.signal(signal.SIGTERM, stop)
conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
deadline = time.monotonic()
while running:
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            sys.exit(f"every.py: {sys.argv[1]} answered {resp.status}")
        answers += 1
    except (OSError, http.client.HTTPException):
        conn.close()  # the next request reconnects
    deadline += interval
    pause = deadline - time.monotonic()
    if pause > 0:
        time.sleep(pause)
    else:
        deadline = time.monotonic()
print(answers)
