//! The Docker daemon's API over its Unix socket: one request per connection
//! (HTTP/1.1, `Connection: close`), JSON in and out. ferry uses it where the command
//! line cannot say what it must: creating a container from a whole definition.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use ferry_engine::ports::container::ContainerError;

/// The longest answer ferry reads.
const MAX_ANSWER: u64 = 16 << 20;

/// An answer: its status and its body.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    /// The daemon's own message of an error answer, or the body as it came.
    pub fn message(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&self.body).trim().to_string())
    }
}

/// Sends one request to the daemon at `socket` and reads its answer.
pub fn request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<Answer, ContainerError> {
    let io = |e| ContainerError::io(socket, e);
    let mut s = UnixStream::connect(socket).map_err(io)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))
        .map_err(io)?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).map_err(io)?;
    s.write_all(body.as_bytes()).map_err(io)?;
    let mut raw = Vec::new();
    s.take(MAX_ANSWER).read_to_end(&mut raw).map_err(io)?;
    parse(&raw).ok_or_else(|| {
        ContainerError::Failed(format!(
            "Docker's daemon at {} gave an answer ferry cannot read",
            socket.display()
        ))
    })
}

/// An HTTP/1.1 answer, its body plain, chunked or up to the end.
fn parse(raw: &[u8]) -> Option<Answer> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut chunked = false;
    let mut length = None;
    for l in lines {
        let (k, v) = l.split_once(':')?;
        match k.trim().to_ascii_lowercase().as_str() {
            "transfer-encoding" => chunked = v.trim().eq_ignore_ascii_case("chunked"),
            "content-length" => length = v.trim().parse::<usize>().ok(),
            _ => {}
        }
    }
    let rest = &raw[end + 4..];
    let body = match (chunked, length) {
        (true, _) => dechunk(rest)?,
        (false, Some(n)) => rest.get(..n)?.to_vec(),
        (false, None) => rest.to_vec(),
    };
    Some(Answer { status, body })
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&rest[..eol]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_plain_chunked_or_to_the_end() {
        let plain = b"HTTP/1.1 201 Created\r\nContent-Length: 9\r\n\r\n{\"Id\":1}\nextra";
        assert_eq!(
            parse(plain),
            Some(Answer {
                status: 201,
                body: b"{\"Id\":1}\n".to_vec()
            })
        );
        let chunked =
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"me\r\n9\r\nssage\":1}\r\n0\r\n\r\n";
        let a = parse(chunked).unwrap();
        assert_eq!(
            (a.status, a.body.as_slice()),
            (404, &b"{\"message\":1}"[..])
        );
        let open = b"HTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(parse(open).unwrap().body, b"");
        for bad in [
            &b"garbage"[..],
            b"HTTP/1.1 x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        ] {
            assert_eq!(parse(bad), None);
        }
    }

    #[test]
    fn an_error_answer_gives_the_daemon_s_message() {
        let a = Answer {
            status: 409,
            body: br#"{"message":"Conflict. The container name is already in use"}"#.to_vec(),
        };
        assert_eq!(
            a.message(),
            "Conflict. The container name is already in use"
        );
    }
}
