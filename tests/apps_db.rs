//! End-to-end: the compatibility suite's databases (docs/compatibility.md). MariaDB,
//! PostgreSQL and SQLite from Debian in lab containers, each with a client session that
//! holds its connection across the move, an open transaction included: each database
//! moves with its rows, its locks and its connections, or is refused before the freeze,
//! and none is lost.

// Test code: a panic is a test failure with its message.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::apps::{moves, start, Session};
use common::lab::Lab;
use common::*;

/// A MariaDB session over one connection: 1000 committed rows and 500 more in an open
/// transaction before the move; after it, on the same connection and in the same
/// transaction, 100 more, what a second connection sees before and after the COMMIT.
const MARIADB_CLIENT: &str = r#"
# python3-pymysql is installed for the system's Python.
sys.path.append("/usr/lib/python3/dist-packages")
import pymysql
ip, table = sys.argv[1], "shop." + sys.argv[2]
def connect():
    return pymysql.connect(host=ip, port=3306, user="root", autocommit=True, connect_timeout=10)
def one(cur, q):
    cur.execute(q)
    return [int(x) for x in cur.fetchone()]
c = connect()
cur = c.cursor()
cur.execute("CREATE DATABASE IF NOT EXISTS shop")
cur.execute(f"CREATE TABLE {table} (id INT AUTO_INCREMENT PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB")
cur.executemany(f"INSERT INTO {table} (v) VALUES (%s)", [(i,) for i in range(1000)])
conn_before = one(cur, "SELECT CONNECTION_ID()")[0]
cur.execute("BEGIN")
cur.executemany(f"INSERT INTO {table} (v) VALUES (%s)", [(i,) for i in range(1000, 1500)])
ready()
wait_go()
conn_after, in_trx = one(cur, "SELECT CONNECTION_ID(), @@in_transaction")
cur.executemany(f"INSERT INTO {table} (v) VALUES (%s)", [(i,) for i in range(1500, 1600)])
inside = one(cur, f"SELECT COUNT(*), SUM(v) FROM {table}")
other = connect().cursor()
outside_uncommitted = one(other, f"SELECT COUNT(*) FROM {table}")[0]
cur.execute("COMMIT")
outside_committed = one(other, f"SELECT COUNT(*), SUM(v) FROM {table}")
done({
    "conn_before": conn_before, "conn_after": conn_after, "in_trx": in_trx,
    "inside": inside, "outside_uncommitted": outside_uncommitted,
    "outside_committed": outside_committed,
    "same_conn_count": one(cur, f"SELECT COUNT(*) FROM {table}")[0],
})
"#;

/// A PostgreSQL session over one connection (the frontend/backend protocol, version 3,
/// trust authentication), shaped like [`MARIADB_CLIENT`].
const POSTGRES_CLIENT: &str = r#"
import socket, struct
ip = sys.argv[1]
class Pg:
    def __init__(self):
        self.s = socket.create_connection((ip, 5432), 10)
        self.s.settimeout(60)
        body = struct.pack("!i", 196608) + b"user\0postgres\0database\0postgres\0\0"
        self.s.sendall(struct.pack("!i", len(body) + 4) + body)
        self.wait()
    def recv(self, n):
        b = b""
        while len(b) < n:
            chunk = self.s.recv(n - len(b))
            if not chunk:
                raise SystemExit("postgres closed the connection")
            b += chunk
        return b
    def wait(self):
        rows = []
        while True:
            t = self.recv(1)
            body = self.recv(struct.unpack("!i", self.recv(4))[0] - 4)
            if t == b"E":
                raise SystemExit("postgres: " + body.decode(errors="replace"))
            if t == b"R" and struct.unpack("!i", body[:4])[0] != 0:
                raise SystemExit("postgres asks for a password")
            if t == b"D":
                i, row = 2, []
                for _ in range(struct.unpack("!h", body[:2])[0]):
                    n = struct.unpack("!i", body[i:i + 4])[0]
                    i += 4
                    row.append(None if n < 0 else int(body[i:i + n]))
                    i += max(n, 0)
                rows.append(row)
            if t == b"Z":
                return rows
    def q(self, sql):
        b = sql.encode() + b"\0"
        self.s.sendall(b"Q" + struct.pack("!i", len(b) + 4) + b)
        return self.wait()
c = Pg()
c.q("CREATE TABLE orders (id serial PRIMARY KEY, v int NOT NULL)")
c.q("INSERT INTO orders (v) SELECT g FROM generate_series(0, 999) g")
conn_before = c.q("SELECT pg_backend_pid()")[0][0]
c.q("BEGIN")
c.q("INSERT INTO orders (v) SELECT g FROM generate_series(1000, 1499) g")
ready()
wait_go()
conn_after = c.q("SELECT pg_backend_pid()")[0][0]
c.q("INSERT INTO orders (v) SELECT g FROM generate_series(1500, 1599) g")
inside = c.q("SELECT COUNT(*), SUM(v) FROM orders")[0]
other = Pg()
outside_uncommitted = other.q("SELECT COUNT(*) FROM orders")[0][0]
c.q("COMMIT")
done({
    "conn_before": conn_before, "conn_after": conn_after, "inside": inside,
    "outside_uncommitted": outside_uncommitted,
    "outside_committed": other.q("SELECT COUNT(*), SUM(v) FROM orders")[0],
})
"#;

/// A SQLite server: one Python process holding `/data/app.db` in exclusive locking mode
/// with a write-ahead log, serving `ADD n` (one row) and `SUM` (the rows' sum and count)
/// on port 7000, one line each way. Its first argument is a marker for `pgrep`.
const SQLITE_SERVER: &str = r#"
import selectors, socket, sqlite3
db = sqlite3.connect("/data/app.db", isolation_level=None)
assert db.execute("PRAGMA locking_mode=EXCLUSIVE").fetchone()[0] == "exclusive"
assert db.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
db.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER NOT NULL)")
srv = socket.create_server(("0.0.0.0", 7000))
sel = selectors.DefaultSelector()
sel.register(srv, selectors.EVENT_READ)
pending = {}
while True:
    for key, _ in sel.select():
        s = key.fileobj
        if s is srv:
            c, _ = srv.accept()
            sel.register(c, selectors.EVENT_READ)
            pending[c] = b""
            continue
        data = s.recv(4096)
        if not data:
            sel.unregister(s)
            s.close()
            del pending[s]
            continue
        pending[s] += data
        while b"\n" in pending[s]:
            line, pending[s] = pending[s].split(b"\n", 1)
            cmd = line.decode().split()
            if cmd[0] == "ADD":
                db.execute("INSERT INTO t VALUES (?)", (int(cmd[1]),))
                reply = "OK"
            elif cmd[0] == "SUM":
                reply = "%d %d" % db.execute("SELECT COALESCE(SUM(n), 0), COUNT(*) FROM t").fetchone()
            else:
                reply = "ERR"
            s.sendall(reply.encode() + b"\n")
"#;

/// A client of [`SQLITE_SERVER`] over one connection: adds 1..=100 before the move and
/// 101..=200 after it.
const SQLITE_CLIENT: &str = r#"
import socket
ip = sys.argv[1]
s = socket.create_connection((ip, 7000))
f = s.makefile("r")
def cmd(line):
    s.sendall(line.encode() + b"\n")
    return f.readline().strip()
for i in range(1, 101):
    assert cmd(f"ADD {i}") == "OK"
before = cmd("SUM")
ready()
wait_go()
for i in range(101, 201):
    assert cmd(f"ADD {i}") == "OK"
done({"before": before, "after": cmd("SUM"), "port": s.getsockname()[1]})
"#;

/// The uid of `user` on this host (the containers share its /etc).
fn uid_of(user: &str) -> u32 {
    let out = Command::new("id").args(["-u", user]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// The command line of a MariaDB container: a fresh datadir in /data, then mariadbd as
/// root on 0.0.0.0:3306 without grant tables, with `extra` options. Its files are 0660
/// (CRIU checks that a reopened file has the mode it had).
fn mariadb_command(extra: &str) -> Vec<String> {
    let script = format!(
        "mariadb-install-db --no-defaults --user=root --datadir=/data/db \
         --auth-root-authentication-method=normal --skip-test-db >/data/install.log 2>&1 && \
         exec /usr/sbin/mariadbd --no-defaults --user=root --datadir=/data/db \
         --bind-address=0.0.0.0 --port=3306 --socket=/run/mysqld.sock --skip-grant-tables \
         --log-error=/data/error.log{extra}"
    );
    vec!["/bin/sh".into(), "-c".into(), script]
}

/// Asserts a database session kept its connection and its open transaction, and that
/// every row is there, seen from both connections.
fn assert_transaction_survived(what: &str, r: &serde_json::Value) {
    assert_eq!(
        r["conn_before"], r["conn_after"],
        "{what}: same connection: {r}"
    );
    // 1600 rows of v = 0..1599: the sum is 1599 * 1600 / 2.
    assert_eq!(
        r["inside"],
        serde_json::json!([1600, 1_279_200]),
        "{what}: {r}"
    );
    assert_eq!(
        r["outside_uncommitted"], 1000,
        "{what}: the open transaction stayed private: {r}"
    );
    assert_eq!(
        r["outside_committed"],
        serde_json::json!([1600, 1_279_200]),
        "{what}: committed rows are visible to a new connection: {r}"
    );
}

#[test]
fn mariadb_moves_with_an_open_transaction_on_its_client_connection() {
    let Some(env) = e2e("mariadb_moves_with_an_open_transaction_on_its_client_connection") else {
        return;
    };
    let lab = Lab::up(&env, 2);
    // Without native AIO (io_uring, which CRIU cannot checkpoint). The buffer pool keeps
    // its default 8 TB reservation of address space (innodb_buffer_pool_size_max): ferry
    // restores it without a commit charge, as at the source.
    let cmd = mariadb_command(" --innodb-use-native-aio=0 --performance-schema=0");
    let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let ip = start(&lab, "db", &args, 3306, 30);
    for (i, (from, to, strategy)) in [("a", "b", "cold"), ("b", "a", "precopy")]
        .into_iter()
        .enumerate()
    {
        let table = format!("orders{i}");
        let s = Session::start(&lab, MARIADB_CLIENT, &[&ip, &table]);
        let r = moves(&lab, "db", from, to, strategy);
        eprintln!("mariadb {strategy}: downtime {} ms", r["downtime_ms"]);
        assert!(
            r["notes"].to_string().contains("file lock"),
            "the report says file locks were enabled: {r}"
        );
        let got = s.finish();
        assert_transaction_survived(strategy, &got);
        assert_eq!(
            got["in_trx"], 1,
            "{strategy}: still in the transaction: {got}"
        );
        assert_eq!(got["same_conn_count"], 1600, "{strategy}: {got}");
    }
}

#[test]
fn mariadb_with_its_defaults_is_refused_before_the_freeze_for_io_uring_alone() {
    let Some(env) =
        e2e("mariadb_with_its_defaults_is_refused_before_the_freeze_for_io_uring_alone")
    else {
        return;
    };
    let lab = Lab::up(&env, 2);
    let cmd = mariadb_command("");
    let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let ip = start(&lab, "db", &args, 3306, 30);
    let (ok, out) = lab.ferry(&["check", "db", "--to", "b", "--json"]);
    let p: serde_json::Value = serde_json::from_str(&out).expect("check json");
    let db = p["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["comm"] == "mariadbd")
        .cloned()
        .unwrap();
    let refuses = |words: &str| {
        p["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["action"] == "refuse" && f["sentence"].as_str().unwrap().contains(words))
    };
    // InnoDB's asynchronous I/O through io_uring, where the kernel offers it.
    assert_eq!(db["io_uring"] == true, refuses("io_uring"), "{p}");
    // The buffer pool's 8 TB reservation is no reason under the default overcommit
    // heuristic: it is restored without a commit charge.
    let overcommit = std::fs::read_to_string("/proc/sys/vm/overcommit_memory").unwrap();
    if overcommit.trim() == "0" {
        assert!(!refuses("overcommit"), "{p}");
    }
    // Any refusal at all ("" is in every sentence).
    if !refuses("") {
        assert!(ok, "{p}");
        return;
    }
    assert!(!ok, "check refuses: {p}");
    let (moved, said) = lab.ferry(&["migrate", "db", "--to", "b"]);
    assert!(!moved, "{said}");
    assert!(said.contains("mariadbd"), "{said}");
    assert_eq!(said.trim().lines().count(), 1, "one sentence: {said}");
    eprintln!("mariadb with its defaults: {}", said.trim());
    assert_eq!(
        lab.container_status("a", "db").as_deref(),
        Some("running"),
        "refused before the freeze: it never stopped"
    );
    assert!(!lab.containers_on("b").contains(&"db".to_string()));
    let answer = lab.client(&["mariadb", "-h", &ip, "-u", "root", "-Ne", "SELECT 6*7"]);
    assert_eq!(answer, "42");
}

#[test]
fn postgres_runs_as_its_own_user_and_is_refused_before_the_freeze_without_cap_sys_resource() {
    let Some(env) = e2e(
        "postgres_runs_as_its_own_user_and_is_refused_before_the_freeze_without_cap_sys_resource",
    ) else {
        return;
    };
    let lab = Lab::up(&env, 2);
    // PostgreSQL refuses to run as root: initdb and the server run as postgres, trusting
    // the lab's addresses.
    let script = "mkdir -p /data/pg /run/pg && chown postgres:postgres /data/pg /run/pg && \
        setpriv --reuid=postgres --regid=postgres --init-groups \
        /usr/lib/postgresql/15/bin/initdb -D /data/pg -U postgres --auth=trust \
        >/data/initdb.log 2>&1 && \
        echo 'host all all 10.77.0.0/16 trust' >> /data/pg/pg_hba.conf && \
        exec setpriv --reuid=postgres --regid=postgres --init-groups \
        /usr/lib/postgresql/15/bin/postgres -D /data/pg -c listen_addresses=0.0.0.0 \
        -c unix_socket_directories=/run/pg";
    let ip = start(&lab, "pg", &["/bin/sh", "-c", script], 5432, 30);
    let s = Session::start(&lab, POSTGRES_CLIENT, &[&ip]);
    let uid = format!("uid {}", uid_of("postgres"));
    if has_cap_sys_resource() {
        // CRIU can read the limits of another uid's processes: it moves.
        let r = moves(&lab, "pg", "a", "b", "cold");
        eprintln!("postgres cold: downtime {} ms", r["downtime_ms"]);
    } else {
        let (ok, out) = lab.ferry(&["check", "pg", "--to", "b"]);
        assert!(!ok, "check refuses: {out}");
        assert!(
            out.contains("(postgres)") && out.contains(&uid) && out.contains("CAP_SYS_RESOURCE"),
            "{out}"
        );
        let (moved, said) = lab.ferry(&["migrate", "pg", "--to", "b"]);
        assert!(!moved, "{said}");
        assert!(
            said.contains("(postgres)") && said.contains(&uid) && said.contains("CAP_SYS_RESOURCE"),
            "one sentence naming a postgres process and its uid: {said}"
        );
        assert_eq!(said.trim().lines().count(), 1, "{said}");
        eprintln!("postgres: {}", said.trim());
        assert_eq!(
            lab.container_status("a", "pg").as_deref(),
            Some("running"),
            "refused before the freeze: it never stopped"
        );
        assert!(!lab.containers_on("b").contains(&"pg".to_string()));
    }
    // The connection opened before still works, its transaction with it, and a new
    // client is served, wherever the server is.
    assert_transaction_survived("postgres", &s.finish());
    let count = lab.client(&[
        "psql",
        "-h",
        &ip,
        "-U",
        "postgres",
        "-Atc",
        "SELECT COUNT(*) FROM orders",
    ]);
    assert_eq!(count, "1600");
}

#[test]
fn sqlite_moves_holding_its_exclusive_lock_and_its_client_connection() {
    let Some(env) = e2e("sqlite_moves_holding_its_exclusive_lock_and_its_client_connection") else {
        return;
    };
    let lab = Lab::up(&env, 2);
    let marker = unique("sqlite");
    let ip = start(
        &lab,
        "lite",
        &["/usr/bin/python3", "-c", SQLITE_SERVER, &marker],
        7000,
        10,
    );
    // A second opener of the file, in the container's mount namespace, finds it locked.
    let second_open = || {
        let pids = pids_with(&marker);
        assert_eq!(pids.len(), 1, "one server: {pids:?}");
        let out = Command::new("nsenter")
            .args(["-t", &pids[0].to_string(), "-m", "/usr/bin/python3", "-c"])
            .arg(
                "import sqlite3; \
                 sqlite3.connect('/data/app.db', timeout=0).execute('SELECT COUNT(*) FROM t')",
            )
            .output()
            .unwrap();
        (pids[0], String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (pid, err) = second_open();
    assert!(err.contains("database is locked"), "{err}");
    assert!(holds_a_lock(pid));
    for (i, (from, to, strategy)) in [("a", "b", "cold"), ("b", "a", "postcopy")]
        .into_iter()
        .enumerate()
    {
        let s = Session::start(&lab, SQLITE_CLIENT, &[&ip]);
        let r = moves(&lab, "lite", from, to, strategy);
        eprintln!("sqlite {strategy}: downtime {} ms", r["downtime_ms"]);
        assert!(
            r["notes"].to_string().contains("file lock"),
            "the report says file locks were enabled: {r}"
        );
        let got = s.finish();
        // Each session adds 1..=200: 20100 and 200 rows more.
        let k = i as u64;
        assert_eq!(
            got["before"],
            format!("{} {}", 20100 * k + 5050, 200 * k + 100),
            "{strategy}: {got}"
        );
        assert_eq!(
            got["after"],
            format!("{} {}", 20100 * (k + 1), 200 * (k + 1)),
            "{strategy}: {got}"
        );
        let (pid, err) = second_open();
        assert!(
            err.contains("database is locked"),
            "{strategy}: the restored server still holds its lock: {err}"
        );
        assert!(holds_a_lock(pid), "{strategy}: /proc/locks shows it");
    }
}
