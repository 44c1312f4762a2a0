//! Who is at the other end of a connection, and what that identity may ask for.
//!
//! Two kinds of certificates come from a deployment's CA: host certificates (agents
//! talking to agents: migrations and their page channels) and operator certificates (a
//! CLI controlling an agent). An operator certificate carries its name as a URI in its
//! subject alternative names (`urn:ferry:operator:NAME`) and no host name, and is valid
//! for client authentication only, so it can neither act as a host nor serve as one.

use ferry_proto::Role;
use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

/// The URI prefix that marks an operator certificate.
pub const OPERATOR_URI: &str = "urn:ferry:operator:";

/// Who a server accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// Root on this host, over the agent's local socket.
    LocalRoot,
    /// The holder of an operator certificate, by its name.
    Operator(String),
    /// An agent whose host certificate is valid for this host name.
    Host(String),
    /// A peer that proved only that it holds the shared secret (never over TCP).
    SecretHolder,
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::LocalRoot => f.write_str("local root"),
            Identity::Operator(n) => write!(f, "operator '{n}'"),
            Identity::Host(n) => write!(f, "host '{n}'"),
            Identity::SecretHolder => f.write_str("a holder of the shared secret"),
        }
    }
}

/// The operator a certificate names, if it is an operator certificate.
pub(crate) fn operator_of(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::certificate::X509Certificate::from_der(cert.as_ref()).ok()?;
    let san = parsed.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|g| match g {
        GeneralName::URI(u) => u.strip_prefix(OPERATOR_URI).map(str::to_string),
        _ => None,
    })
}

/// Whether host `id` is among the peers `me` accepts (`None`: every host).
pub(crate) fn allowed(
    id: Identity,
    accept_from: Option<&[String]>,
    me: &str,
) -> Result<Identity, String> {
    match (&id, accept_from) {
        (Identity::Host(h), Some(list)) if !list.iter().any(|a| a == h) => Err(format!(
            "host '{h}' is not among the peers {me} accepts migrations from (its agent's --accept-from)"
        )),
        _ => Ok(id),
    }
}

/// What a TLS client whose certificate is `cert` and who announced `host` may be, in
/// `role`; or why it may not (one sentence for the refusal).
pub(crate) fn over_tls(
    role: Role,
    host: &str,
    cert: Option<&CertificateDer<'_>>,
) -> Result<Identity, String> {
    let Some(cert) = cert else {
        return Err("the peer presented no certificate".into());
    };
    match (role, operator_of(cert)) {
        (Role::Control, Some(name)) => Ok(Identity::Operator(name)),
        (Role::Control, None) => Err(
            "a host certificate cannot control an agent: control over TCP needs an operator certificate ('ferry certs issue-operator NAME')"
                .into(),
        ),
        (_, Some(name)) => Err(format!(
            "operator '{name}' may control agents but not act as a host: migrations and page channels need a host certificate ('ferry certs issue HOST')"
        )),
        (_, None) if crate::tls::valid_for(cert, host) => Ok(Identity::Host(host.to_string())),
        (_, None) => Err(format!(
            "the certificate presented is not valid for host '{host}', the name the peer gave"
        )),
    }
}
