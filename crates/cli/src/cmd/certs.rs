//! `ferry certs`: the deployment's own CA and its hosts' certificates (docs/security.md).

use std::net::IpAddr;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Create a CA: DIR/ca.pem (give it to every host) and DIR/ca-key.pem (keep it safe).
    Init {
        #[arg(long, default_value = "/etc/ferry/tls")]
        dir: PathBuf,
        /// Replace an existing CA (every certificate it signed stops working).
        #[arg(long)]
        force: bool,
    },
    /// Issue a certificate for a host (or an operator's CLI), signed by the CA in DIR:
    /// DIR/HOST.pem and DIR/HOST-key.pem.
    Issue {
        /// The host's name, as its agent's --name.
        host: String,
        /// An address peers reach the host at (repeat for several).
        #[arg(long = "ip")]
        ips: Vec<IpAddr>,
        #[arg(long, default_value = "/etc/ferry/tls")]
        dir: PathBuf,
    },
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    match a.command {
        Command::Init { dir, force } => {
            ferry_transport::certs::init_ca(&dir, force)?;
            println!(
                "CA created: {} (give it to every host) and {} (keep it off the hosts)",
                dir.join("ca.pem").display(),
                dir.join("ca-key.pem").display()
            );
        }
        Command::Issue { host, ips, dir } => {
            let f = ferry_transport::certs::issue(&dir, &host, &ips)?;
            println!(
                "certificate for {host}: {} and {}; start its agent with --tls-ca {} --tls-cert {} --tls-key {}",
                f.cert.display(),
                f.key.display(),
                f.ca.display(),
                f.cert.display(),
                f.key.display()
            );
            if ips.is_empty() {
                println!("note: without --ip, peers can reach this host only by a name, and ferry dials addresses: add --ip for an agent");
            }
        }
    }
    Ok(0)
}
