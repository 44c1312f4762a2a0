# SQLite under an exclusive lock (locking_mode=EXCLUSIVE, WAL): every line is a row
# inserted in its own transaction, answered with the row count.
import socketserver, sqlite3
db = sqlite3.connect("/data/app.db", check_same_thread=False, isolation_level=None)
db.execute("PRAGMA locking_mode=EXCLUSIVE")
db.execute("PRAGMA journal_mode=WAL")
db.execute("CREATE TABLE IF NOT EXISTS t (v TEXT)")
class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            db.execute("INSERT INTO t VALUES (?)", (line.strip().decode(),))
            n = db.execute("SELECT count(*) FROM t").fetchone()[0]
            self.wfile.write(b"%d\n" % n)
socketserver.TCPServer.allow_reuse_address = True
socketserver.TCPServer(("0.0.0.0", 7000), Handler).serve_forever()
