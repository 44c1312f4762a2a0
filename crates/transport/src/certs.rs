//! A deployment's own CA and the host and operator certificates it signs (`ferry certs`).

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

use crate::{TlsFiles, TransportError};

fn fail(path: &Path, detail: impl Into<String>) -> TransportError {
    TransportError::Tls {
        path: path.display().to_string(),
        detail: detail.into(),
    }
}

fn write(path: &Path, text: &str, mode: u32) -> Result<(), TransportError> {
    use std::os::unix::fs::PermissionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(|e| fail(path, format!("cannot write it: {e}")))?;
    // The mode given at creation does not apply to a file that was already there.
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| fail(path, format!("cannot set its mode: {e}")))?;
    f.write_all(text.as_bytes())
        .map_err(|e| fail(path, format!("cannot write it: {e}")))
}

/// Refuses to replace existing files of an identity unless `force`.
fn fresh(files: &TlsFiles, force: bool) -> Result<(), TransportError> {
    for p in [&files.cert, &files.key] {
        if !force && p.exists() {
            return Err(fail(
                p,
                "it exists already; replacing it cuts off whoever uses it (use --force to do so anyway)",
            ));
        }
    }
    Ok(())
}

/// A name for a host or an operator: letters, digits, '-' and '.', at most 63.
fn check_name(name: &str, what: &str) -> Result<(), TransportError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    match ok {
        true => Ok(()),
        false => Err(TransportError::Tls {
            path: name.to_string(),
            detail: format!("{what} name is letters, digits, '-' and '.' (at most 63)"),
        }),
    }
}

/// The CA of `dir`, to sign with.
fn load_ca(dir: &Path) -> Result<(rcgen::Certificate, KeyPair), TransportError> {
    let (ca_path, ca_key_path) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
    let ca_pem = std::fs::read_to_string(&ca_path).map_err(|e| {
        fail(
            &ca_path,
            format!("cannot read the CA ({e}); create one with 'ferry certs init'"),
        )
    })?;
    let ca_key_pem = std::fs::read_to_string(&ca_key_path)
        .map_err(|e| fail(&ca_key_path, format!("cannot read the CA's key: {e}")))?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(|e| fail(&ca_key_path, e.to_string()))?;
    let ca_params = CertificateParams::from_ca_cert_pem(&ca_pem)
        .map_err(|e| fail(&ca_path, format!("not a CA certificate: {e}")))?;
    let ca = ca_params
        .self_signed(&ca_key)
        .map_err(|e| fail(&ca_key_path, format!("it is not the CA's key: {e}")))?;
    Ok((ca, ca_key))
}

/// Signs `params` with the CA of `dir` and writes the certificate and a new key as
/// `files`.
fn sign(
    dir: &Path,
    mut params: CertificateParams,
    files: TlsFiles,
) -> Result<TlsFiles, TransportError> {
    let (ca, ca_key) = load_ca(dir)?;
    let key = KeyPair::generate().map_err(|e| fail(dir, e.to_string()))?;
    params.is_ca = IsCa::NoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2045, 1, 1);
    let cert = params
        .signed_by(&key, &ca, &ca_key)
        .map_err(|e| fail(dir, e.to_string()))?;
    write(&files.key, &key.serialize_pem(), 0o600)?;
    write(&files.cert, &cert.pem(), 0o644)?;
    Ok(files)
}

/// Creates a CA in `dir` (`ca.pem`, and `ca-key.pem` readable by its owner only).
/// Refuses to replace an existing one unless `force`: every certificate it signed would
/// stop working.
pub fn init_ca(dir: &Path, force: bool) -> Result<(), TransportError> {
    std::fs::create_dir_all(dir).map_err(|e| fail(dir, format!("cannot create it: {e}")))?;
    let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
    if !force && (cert_path.exists() || key_path.exists()) {
        return Err(fail(
            &cert_path,
            "a CA already exists there; replacing it invalidates every certificate it signed (use --force to do so anyway)",
        ));
    }
    let key = KeyPair::generate().map_err(|e| fail(&key_path, e.to_string()))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "ferry CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2045, 1, 1);
    let cert = params
        .self_signed(&key)
        .map_err(|e| fail(&cert_path, e.to_string()))?;
    write(&key_path, &key.serialize_pem(), 0o600)?;
    write(&cert_path, &cert.pem(), 0o644)
}

/// Issues a certificate for host `name` (valid as a DNS name and for each of `ips`),
/// signed by the CA in `dir`. It serves both as a server and as a client certificate,
/// between agents only: it cannot control an agent. Existing files are replaced only
/// with `force`.
pub fn issue(
    dir: &Path,
    name: &str,
    ips: &[IpAddr],
    force: bool,
) -> Result<TlsFiles, TransportError> {
    check_name(name, "a host")?;
    let files = TlsFiles::in_dir(dir, name);
    fresh(&files, force)?;
    let mut params = CertificateParams::new(vec![name.to_string()])
        .map_err(|e| fail(dir, format!("'{name}': {e}")))?;
    params
        .subject_alt_names
        .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    sign(dir, params, files)
}

/// Issues an operator certificate for `name`, signed by the CA in `dir`
/// (`operator-NAME.pem`, `operator-NAME-key.pem`): a client certificate that may
/// control agents, and names no host, so it can neither migrate nor serve.
pub fn issue_operator(dir: &Path, name: &str, force: bool) -> Result<TlsFiles, TransportError> {
    check_name(name, "an operator")?;
    let files = TlsFiles::in_dir(dir, &format!("operator-{name}"));
    fresh(&files, force)?;
    let uri = format!("{}{name}", crate::OPERATOR_URI);
    let uri = rcgen::Ia5String::try_from(uri.as_str()).map_err(|e| fail(dir, e.to_string()))?;
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::URI(uri)];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("ferry operator {name}"));
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    sign(dir, params, files)
}
