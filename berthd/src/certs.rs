//! `berthd certs`: a CA plus server and client certificates for `--tlsverify`,
//! laid out as both sides expect them:
//!
//! ```text
//! ca.pem  ca-key.pem                 the certificate authority
//! server-cert.pem  server-key.pem    for berthd --tlscert/--tlskey
//! cert.pem  key.pem                  for clients (DOCKER_CERT_PATH also wants ca.pem)
//! ```
//! Meant for testing and first use; production deployments bring their own PKI.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

fn write(dir: &Path, name: &str, data: &str, mode: u32) -> anyhow::Result<()> {
    let path = dir.join(name);
    fs::write(&path, data).with_context(|| format!("write {}", path.display()))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Writes a fresh CA, a server certificate for `hosts` and a client certificate named `client_cn`.
pub fn generate(out: &Path, hosts: &[String], client_cn: &str) -> anyhow::Result<()> {
    fs::create_dir_all(out).with_context(|| format!("create {}", out.display()))?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name.push(DnType::CommonName, "Berth CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_key = KeyPair::generate()?;
    let ca_key_pem = ca_key.serialize_pem();
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;

    let mut server = CertificateParams::new(hosts.to_vec())?;
    server.distinguished_name.push(DnType::CommonName, "berthd");
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    // Also a client identity: a split-mode service dials the others with the
    // same certificate it serves (see berth_core::tls).
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let server_key = KeyPair::generate()?;
    let server_cert = server.signed_by(&server_key, &ca)?;

    let mut client = CertificateParams::new(Vec::<String>::new())?;
    client.distinguished_name.push(DnType::CommonName, client_cn);
    client.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_key = KeyPair::generate()?;
    let client_cert = client.signed_by(&client_key, &ca)?;

    write(out, "ca.pem", &ca.pem(), 0o644)?;
    write(out, "ca-key.pem", &ca_key_pem, 0o600)?;
    write(out, "server-cert.pem", &server_cert.pem(), 0o644)?;
    write(out, "server-key.pem", &server_key.serialize_pem(), 0o600)?;
    write(out, "cert.pem", &client_cert.pem(), 0o644)?;
    write(out, "key.pem", &client_key.serialize_pem(), 0o600)?;
    Ok(())
}
