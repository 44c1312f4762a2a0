//! The established TCP connections of the containers an agent runs, read from the
//! kernel's table of each container's network namespace (`/proc/PID/net/tcp` of one of
//! its processes): what `ferry migrate --new-ip` needs to find the peers that must
//! follow a container, and the ones that cannot.

use ferry_types::ContainerConnections;

use crate::state::Agent;

/// `ADDR:PORT` from the kernel's hex form (`0A4D010A:18EB`: the address as the
/// network-order bytes read as one little-endian word).
fn endpoint(hex: &str) -> Option<String> {
    let (a, p) = hex.split_once(':')?;
    let word = u32::from_str_radix(a, 16).ok()?;
    let port = u16::from_str_radix(p, 16).ok()?;
    let ip = std::net::Ipv4Addr::from(word.to_le_bytes());
    Some(format!("{ip}:{port}"))
}

/// The established connections of one `/proc/net/tcp` table.
pub fn established(table: &str) -> Vec<(String, String)> {
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // State 01 is ESTABLISHED.
            if f.get(3) != Some(&"01") {
                return None;
            }
            Some((endpoint(f.get(1)?)?, endpoint(f.get(2)?)?))
        })
        .collect()
}

/// The connections of this agent's running containers (or of `only`).
pub async fn list(agent: &Agent, only: Option<&str>) -> Vec<ContainerConnections> {
    let mut out = Vec::new();
    for c in crate::containers::list(agent).await {
        if only.is_some_and(|o| o != c.name) || c.status != "running" {
            continue;
        }
        let Some(pid) = c.pid else { continue };
        let Ok(table) = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")) else {
            continue;
        };
        out.push(ContainerConnections {
            container: c.name,
            established: established(&table),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn established_rows_are_read_and_others_skipped() {
        let t = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0A01040A:18EB 6400040A:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 1 1\n   1: 00000000:18EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1\n";
        assert_eq!(
            established(t),
            [("10.4.1.10:6379".to_string(), "10.4.0.100:54000".to_string())]
        );
    }
}
