//! A deployment's own CA and the host certificates it signs (`ferry certs`).

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
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(|e| fail(path, format!("cannot write it: {e}")))?;
    f.write_all(text.as_bytes())
        .map_err(|e| fail(path, format!("cannot write it: {e}")))
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
/// signed by the CA in `dir`. It serves both as a server and as a client certificate.
pub fn issue(dir: &Path, name: &str, ips: &[IpAddr]) -> Result<TlsFiles, TransportError> {
    let (ca_path, ca_key_path) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
    if name.is_empty()
        || name.len() > 63
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(TransportError::Tls {
            path: name.to_string(),
            detail: "a host name is letters, digits, '-' and '.' (at most 63)".into(),
        });
    }
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

    let key = KeyPair::generate().map_err(|e| fail(dir, e.to_string()))?;
    let mut params = CertificateParams::new(vec![name.to_string()])
        .map_err(|e| fail(dir, format!("'{name}': {e}")))?;
    params
        .subject_alt_names
        .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::NoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2045, 1, 1);
    let cert = params
        .signed_by(&key, &ca, &ca_key)
        .map_err(|e| fail(dir, e.to_string()))?;
    let files = TlsFiles::in_dir(dir, name);
    write(&files.key, &key.serialize_pem(), 0o600)?;
    write(&files.cert, &cert.pem(), 0o644)?;
    Ok(files)
}
