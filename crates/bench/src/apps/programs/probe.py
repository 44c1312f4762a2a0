# A client that sends one request every millisecond on one connection and records the
# longest wait for an answer: the downtime as this client sees it. Run until SIGTERM;
# then writes what it saw as JSON to OUT.
#   probe.py PROTO IP PORT OUT     PROTO: redis | memcached | http | line | mysql
#   probe.py wait IP PORT SECONDS  waits until IP:PORT accepts connections
import json, signal, socket, sys, time

def wait(ip, port, limit):
    t = time.time()
    while time.time() - t < limit:
        try:
            socket.create_connection((ip, port), 1).close()
            return 0
        except OSError:
            time.sleep(0.05)
    return 1

if sys.argv[1] == "wait":
    sys.exit(wait(sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))

proto, ip, port, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
stop = False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)

def plain(request, answer):
    s = socket.create_connection((ip, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = s.makefile("rb")
    def ask():
        s.sendall(request)
        answer(f)
    return ask, s

def line(f):
    if not f.readline():
        raise ConnectionError("the server closed the connection")

def http(f):
    length = 0
    while True:
        h = f.readline()
        if not h:
            raise ConnectionError("the server closed the connection")
        if h in (b"\r\n", b"\n"):
            break
        if h.lower().startswith(b"content-length:"):
            length = int(h.split(b":")[1])
    f.read(length)

if proto == "mysql":
    sys.path.append("/usr/lib/python3/dist-packages")
    import pymysql
    db = pymysql.connect(host=ip, port=port, user="root", autocommit=True)
    cur = db.cursor()
    def ask():
        cur.execute("SELECT 1")
        cur.fetchall()
    conn = db._sock
else:
    request, answer = {
        "redis": (b"PING\r\n", line),
        "memcached": (b"version\r\n", line),
        "http": (b"GET / HTTP/1.1\r\nHost: probe\r\n\r\n", http),
        "line": (b"PING\n", line),
    }[proto]
    ask, conn = plain(request, answer)

local = conn.getsockname()
worst, requests, errors = 0.0, 0, []
start = time.monotonic()
while not stop:
    t = time.monotonic()
    try:
        ask()
    except Exception as e:
        errors.append(f"{type(e).__name__}: {e}")
        break
    took = time.monotonic() - t
    worst = max(worst, took)
    requests += 1
    time.sleep(max(0.0, 0.001 - took))
with open(out, "w") as f:
    json.dump({"requests": requests, "errors": errors, "max_latency_ms": worst * 1000,
               "duration_ms": (time.monotonic() - start) * 1000,
               "local_port": local[1]}, f)
