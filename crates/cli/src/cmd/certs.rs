//! `ferry certs`: the deployment's own CA, its hosts' and its operators' certificates
//! (docs/security.md).

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
    /// Issue a host certificate, signed by the CA in DIR: DIR/HOST.pem and
    /// DIR/HOST-key.pem. Agents talk to each other with it; it cannot control an agent.
    Issue {
        /// The host's name, as its agent's --name.
        host: String,
        /// An address peers reach the host at (repeat for several).
        #[arg(long = "ip")]
        ips: Vec<IpAddr>,
        #[arg(long, default_value = "/etc/ferry/tls")]
        dir: PathBuf,
        /// Replace an existing certificate and key of that name.
        #[arg(long)]
        force: bool,
    },
    /// Issue an operator certificate, signed by the CA in DIR: DIR/operator-NAME.pem
    /// and DIR/operator-NAME-key.pem. A CLI controls remote agents with it; it cannot
    /// act as a host.
    IssueOperator {
        /// Who holds it (a person or an automation), as it appears in agents' logs.
        name: String,
        #[arg(long, default_value = "/etc/ferry/tls")]
        dir: PathBuf,
        /// Replace an existing certificate and key of that name.
        #[arg(long)]
        force: bool,
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
        Command::IssueOperator { name, dir, force } => {
            let f = ferry_transport::certs::issue_operator(&dir, &name, force)?;
            println!(
                "operator certificate for {name}: {} and {}; give the CLI --tls-ca {} --tls-cert {} --tls-key {}",
                f.cert.display(),
                f.key.display(),
                f.ca.display(),
                f.cert.display(),
                f.key.display()
            );
        }
        Command::Issue {
            host,
            ips,
            dir,
            force,
        } => {
            let f = ferry_transport::certs::issue(&dir, &host, &ips, force)?;
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
