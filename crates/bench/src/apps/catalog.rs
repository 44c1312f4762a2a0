//! The applications `ferry bench apps` moves: real servers from Debian's packages and a
//! few small programs (in `programs/`), each with the request its probe sends.

/// How the probe asks (`programs/probe.py`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Redis,
    Memcached,
    Http,
    Line,
    Mysql,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Redis => "redis",
            Proto::Memcached => "memcached",
            Proto::Http => "http",
            Proto::Line => "line",
            Proto::Mysql => "mysql",
        }
    }
}

/// One application.
#[derive(Debug, Clone)]
pub struct App {
    pub name: &'static str,
    pub what: &'static str,
    pub command: Vec<String>,
    pub port: u16,
    pub proto: Proto,
    /// Redis only: bytes of data to fill it with.
    pub redis_fill: u64,
    /// How long it may take to listen.
    pub start_secs: u64,
}

pub const PROBE: &str = include_str!("programs/probe.py");
const LINES: &str = include_str!("programs/lines.py");
const SPARSE: &str = include_str!("programs/sparse.py");
const SQLITE: &str = include_str!("programs/sqlite.py");
const JAVA: &str = include_str!("programs/S.java");
const NODE: &str = include_str!("programs/server.js");
const NGINX: &str = include_str!("programs/nginx.conf");

fn argv(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// `sh -c SCRIPT sh FILE`: the script finds the file's content in `$1`.
fn with_file(script: &str, content: &str) -> Vec<String> {
    argv(&["/bin/sh", "-c", script, "sh", content])
}

fn redis(name: &'static str, what: &'static str, fill: u64) -> App {
    App {
        name,
        what,
        command: crate::redis::server_args(6379),
        port: 6379,
        proto: Proto::Redis,
        redis_fill: fill,
        start_secs: 10,
    }
}

fn app(
    name: &'static str,
    what: &'static str,
    command: Vec<String>,
    port: u16,
    proto: Proto,
    start_secs: u64,
) -> App {
    App {
        name,
        what,
        command,
        port,
        proto,
        redis_fill: 0,
        start_secs,
    }
}

/// Every application, in the order the matrix shows them.
pub fn all() -> Vec<App> {
    let mut v = servers();
    v.extend(databases());
    v
}

/// Key-value stores, web servers, runtimes.
fn servers() -> Vec<App> {
    vec![
        redis("redis", "Redis with 100 MB", 100_000_000),
        redis("redis-200mb", "Redis with 200 MB (the sparse server's baseline)", 200_000_000),
        app(
            "sparse",
            "1 TB reserved (PROT_NONE) beside 200 MB of data",
            argv(&["/usr/bin/python3", "-c", SPARSE]),
            7100,
            Proto::Line,
            60,
        ),
        app(
            "memcached",
            "memcached",
            argv(&["/usr/bin/memcached", "-u", "root", "-l", "0.0.0.0", "-p", "11211", "-m", "64"]),
            11211,
            Proto::Memcached,
            10,
        ),
        app(
            "nginx",
            "nginx, HTTP/1.1 keep-alive",
            with_file(
                "mkdir -p /data/www && echo hello > /data/www/index.html && printf '%s' \"$1\" > /data/nginx.conf && exec /usr/sbin/nginx -p /data -e /data/error.log -c /data/nginx.conf",
                NGINX,
            ),
            80,
            Proto::Http,
            10,
        ),
        app(
            "node",
            "Node.js HTTP keep-alive server",
            with_file("printf '%s' \"$1\" > /data/server.js && exec /usr/bin/node /data/server.js", NODE),
            8080,
            Proto::Http,
            20,
        ),
        app(
            "jvm",
            "OpenJDK 17 line server (defaults, -Xmx64m)",
            with_file("printf '%s' \"$1\" > /data/S.java && exec java -Xmx64m /data/S.java", JAVA),
            7000,
            Proto::Line,
            60,
        ),
        app(
            "asyncio",
            "Python asyncio line server",
            argv(&["/usr/bin/python3", "-c", LINES]),
            8000,
            Proto::Line,
            10,
        ),
        app(
            "sqlite",
            "SQLite under an exclusive lock, a row per request",
            argv(&["/usr/bin/python3", "-c", SQLITE]),
            7000,
            Proto::Line,
            10,
        ),
    ]
}

/// Databases with files and locks of their own.
fn databases() -> Vec<App> {
    vec![
        app(
            "mariadb",
            "MariaDB 10.11 (InnoDB without io_uring), SELECT 1",
            argv(&[
                "/bin/sh",
                "-c",
                "mariadb-install-db --no-defaults --user=root --datadir=/data/db --auth-root-authentication-method=normal --skip-test-db >/data/install.log 2>&1 && exec /usr/sbin/mariadbd --no-defaults --user=root --datadir=/data/db --bind-address=0.0.0.0 --port=3306 --socket=/run/mysqld.sock --skip-grant-tables --log-error=/data/error.log --innodb-use-native-aio=0 --performance-schema=0",
            ]),
            3306,
            Proto::Mysql,
            60,
        ),
        app(
            "mariadb-default",
            "MariaDB 10.11 with its defaults (io_uring)",
            argv(&[
                "/bin/sh",
                "-c",
                "mariadb-install-db --no-defaults --user=root --datadir=/data/db --auth-root-authentication-method=normal --skip-test-db >/data/install.log 2>&1 && exec /usr/sbin/mariadbd --no-defaults --user=root --datadir=/data/db --bind-address=0.0.0.0 --port=3306 --socket=/run/mysqld.sock --skip-grant-tables --log-error=/data/error.log",
            ]),
            3306,
            Proto::Mysql,
            60,
        ),
        app(
            "postgres",
            "PostgreSQL 15, as its own user",
            argv(&[
                "/bin/sh",
                "-c",
                "mkdir -p /data/pg /run/pg && chown postgres:postgres /data/pg /run/pg && setpriv --reuid=postgres --regid=postgres --init-groups /usr/lib/postgresql/15/bin/initdb -D /data/pg -U postgres --auth=trust >/data/initdb.log 2>&1 && echo 'host all all 10.77.0.0/16 trust' >> /data/pg/pg_hba.conf && exec setpriv --reuid=postgres --regid=postgres --init-groups /usr/lib/postgresql/15/bin/postgres -D /data/pg -c listen_addresses=0.0.0.0 -c unix_socket_directories=/run/pg",
            ]),
            5432,
            Proto::Line,
            60,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_commands_complete() {
        let apps = all();
        let mut names: Vec<&str> = apps.iter().map(|a| a.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), apps.len());
        assert!(apps.iter().all(|a| !a.command.is_empty() && a.port > 0));
    }
}
