//! TLS material of the ingest endpoint: a self-signed certificate made at start, or PEM files.
//!
//! Owns loading/generating the leaf certificate and its sha256 fingerprint (what devices pin), and
//! the rustls server config (TLS 1.3, ring, ALPN `flevum/1`). Does not verify clients: devices
//! authenticate with their token inside the QUIC connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

use super::IngestError;

/// Session tickets sent per connection: one for the next connection and one spare. A device
/// spends a ticket per connection attempt (a TLS 1.3 client uses each at most once), also on
/// attempts that never reach the TLS layer (refused by admission control with
/// `CONNECTION_REFUSED`, timed out, or sent to a server that is shutting down). Each ticket costs
/// the server a cache entry and ≈2–5 % of a handshake's CPU (measured with callgrind, see
/// `bench/STORM_0RTT.md`), about what a resumption saves, so no more than this.
pub const TICKETS_PER_CONNECTION: usize = 2;

/// Where the endpoint's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsConfig {
    /// Generate a fresh self-signed certificate for these DNS names / IPs at start (devices pin it
    /// by fingerprint; it changes at every start).
    SelfSigned {
        /// Subject alternative names of the certificate.
        names: Vec<String>,
    },
    /// Load a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1 or SEC1).
    Files {
        /// PEM file with the leaf certificate first.
        cert: PathBuf,
        /// PEM file with the private key.
        key: PathBuf,
    },
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig::SelfSigned {
            names: vec!["localhost".into()],
        }
    }
}

/// The certificate chain and key, ready for rustls.
pub(crate) struct TlsMaterial {
    /// Leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
}

/// Lowercase hex sha256 of a DER certificate: the pin devices compare against.
pub fn fingerprint(der: &[u8]) -> String {
    use std::fmt::Write;
    let digest = Sha256::digest(der);
    let mut s = String::with_capacity(64);
    for b in digest {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Generates a self-signed certificate for `names` and writes it and its key as PEM files, so a
/// deployment can keep one stable pin across restarts. Returns the fingerprint.
pub fn write_self_signed(
    names: &[String],
    cert_path: &Path,
    key_path: &Path,
) -> Result<String, IngestError> {
    let ck = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| IngestError::Tls(format!("generating certificate: {e}")))?;
    std::fs::write(cert_path, ck.cert.pem()).map_err(|e| IngestError::Io {
        what: format!("writing {}", cert_path.display()),
        source: e,
    })?;
    std::fs::write(key_path, ck.signing_key.serialize_pem()).map_err(|e| IngestError::Io {
        what: format!("writing {}", key_path.display()),
        source: e,
    })?;
    Ok(fingerprint(ck.cert.der()))
}

impl TlsMaterial {
    /// Generates or loads the material described by `config`.
    pub fn load(config: &TlsConfig) -> Result<TlsMaterial, IngestError> {
        match config {
            TlsConfig::SelfSigned { names } => {
                let ck = rcgen::generate_simple_self_signed(names.clone())
                    .map_err(|e| IngestError::Tls(format!("generating certificate: {e}")))?;
                let key = PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der());
                Ok(TlsMaterial {
                    chain: vec![ck.cert.der().clone()],
                    key: PrivateKeyDer::Pkcs8(key),
                })
            }
            TlsConfig::Files { cert, key } => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| IngestError::Tls(format!("reading {}: {e}", cert.display())))?;
                if chain.is_empty() {
                    return Err(IngestError::Tls(format!(
                        "{} holds no certificate",
                        cert.display()
                    )));
                }
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| IngestError::Tls(format!("reading {}: {e}", key.display())))?;
                Ok(TlsMaterial { chain, key })
            }
        }
    }

    /// sha256 hex of the leaf.
    pub fn fingerprint(&self) -> String {
        self.chain
            .first()
            .map(|c| fingerprint(c.as_ref()))
            .unwrap_or_default()
    }

    /// The rustls server config (TLS 1.3 only, ring provider, ALPN `flevum/1`), remembering up
    /// to `session_cache` sessions for resumption (0 = no resumption tickets) and accepting 0-RTT
    /// data from resumed devices when `zero_rtt` is set.
    ///
    /// Resumption is stateful on purpose: rustls accepts early data only with a server-side
    /// session cache (RFC 8446 §8.1), and its tickets are single use (`take`), so a replayed
    /// first flight finds its ticket consumed and gets a full handshake without its 0-RTT data.
    /// Stateless tickets would cost no memory but allow replays within their lifetime.
    /// [`TICKETS_PER_CONNECTION`] tickets are issued per connection, so the cache needs about
    /// that many entries per device; an entry is a few hundred bytes.
    pub fn server_config(
        self,
        session_cache: usize,
        zero_rtt: bool,
    ) -> Result<Arc<rustls::ServerConfig>, IngestError> {
        // The device client's provider: TLS_AES_128_GCM_SHA256 first (SHA-NI for the key
        // schedule), and the server's order wins.
        let provider = Arc::new(flevum_protocol::client::crypto_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| IngestError::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(self.chain, self.key)
            .map_err(|e| IngestError::Tls(e.to_string()))?;
        cfg.alpn_protocols = vec![flevum_protocol::ALPN.to_vec()];
        cfg.ignore_client_order = true;
        if session_cache > 0 {
            cfg.session_storage =
                Arc::new(super::resumption::CountingSessionCache::new(session_cache));
            cfg.send_tls13_tickets = TICKETS_PER_CONNECTION;
            // QUIC allows only 0 or u32::MAX here; the amount is bounded by flow control.
            cfg.max_early_data_size = if zero_rtt { u32::MAX } else { 0 };
        } else {
            cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
            cfg.send_tls13_tickets = 0;
            cfg.max_early_data_size = 0;
        }
        Ok(Arc::new(cfg))
    }
}
