"""A hostile HTTP client for tests/tests/http_exhaustion.rs: from many source addresses
(given on the command line, all on this network namespace's interface) it keeps about
CONNECTIONS connections open to the node, a third each silent, slowloris (half a request
head, then nothing) and slow bodies (a whole head, a few bytes of a large body, then
nothing), reopening each as soon as the node closes it; and HUGE connections that stream
a multi-gigabyte body (declared, and chunked) as fast as they can. It prints "flooding" once
every connection has been opened, runs until its standard input closes, then prints one
JSON line of what it saw. Standard library only."""

import json
import select
import selectors
import socket
import sys
import threading
import time

host, port, rid, token = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
connections, huge = int(sys.argv[5]), int(sys.argv[6])
sources = sys.argv[7:]
stop = threading.Event()
lock = threading.Lock()
seen = {"opened": 0, "refused": 0, "closed_by_node": 0, "statuses": {}, "huge": [],
        "huge_bytes_sent": 0}


def status_of(data):
    line = data.split(b"\r\n", 1)[0].decode("latin-1", "replace")
    parts = line.split(" ")
    return parts[1] if len(parts) > 1 and parts[0].startswith("HTTP/") else None


def note(data):
    s = status_of(data)
    if s:
        with lock:
            seen["statuses"][s] = seen["statuses"].get(s, 0) + 1


def opening(kind):
    if kind == 0:
        return b""
    if kind == 1:
        return b"GET /api/v1/records HTTP/1.1\r\nHost: node\r\nAuthorization: Bearer "
    return (("POST /api/v1/records/%s/entries HTTP/1.1\r\nHost: node\r\n"
             "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
             "Content-Length: 1048576\r\n\r\n{\"category\": \"vital-signs\", " % (rid, token))
            .encode())


def connect(i):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.settimeout(5)
    try:
        s.bind((sources[i % len(sources)], 0))
        s.connect((host, port))
        s.sendall(opening(i % 3))
    except OSError:
        s.close()
        with lock:
            seen["refused"] += 1
        return None
    s.setblocking(False)
    with lock:
        seen["opened"] += 1
    return s


def hold():
    sel = selectors.DefaultSelector()
    socks = {}

    def reopen(i):
        s = connect(i)
        socks[i] = s
        if s is not None:
            sel.register(s, selectors.EVENT_READ, i)

    for i in range(connections):
        reopen(i)
    print("flooding", flush=True)
    while not stop.is_set():
        for key, _ in sel.select(0.5):
            s, i = key.fileobj, key.data
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if data:
                note(data)
            # The node answered or closed: this connection is done; open another.
            sel.unregister(s)
            s.close()
            with lock:
                seen["closed_by_node"] += 1
            reopen(i)
        for i, s in list(socks.items()):
            if s is None and not stop.is_set():
                reopen(i)
    for s in socks.values():
        if s is not None:
            s.close()


def stream(n):
    chunked = n % 2 == 1
    head = ("POST /api/v1/records/%s/entries HTTP/1.1\r\nHost: node\r\n"
            "Authorization: Bearer %s\r\nContent-Type: application/json\r\n" % (rid, token))
    head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else "Content-Length: 4294967296\r\n\r\n"
    chunk = b"[" * 65536
    if chunked:
        chunk = b"10000\r\n" + chunk + b"\r\n"
    sent = 0
    answer = b""
    s = socket.socket()
    s.settimeout(30)
    try:
        s.bind((sources[n % len(sources)], 0))
        s.connect((host, port))
        s.sendall(head.encode())
        while sent < (4 << 30) and not stop.is_set():
            r, _, _ = select.select([s], [], [], 0)
            if r:
                answer = s.recv(65536)
                break
            s.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass
    try:
        if not answer:
            answer = s.recv(65536)
    except OSError:
        pass
    s.close()
    with lock:
        seen["huge"].append(status_of(answer) or "closed")
        seen["huge_bytes_sent"] += sent


threads = [threading.Thread(target=hold)] + [threading.Thread(target=stream, args=(n,))
                                             for n in range(huge)]
for t in threads:
    t.start()
sys.stdin.read()
stop.set()
for t in threads:
    t.join()
print(json.dumps(seen), flush=True)
