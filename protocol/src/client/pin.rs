//! Certificate pinning for the device client: trust exactly one leaf certificate by its sha256.
//!
//! Owns the rustls `ServerCertVerifier` that accepts only the pinned leaf (no CA, no name or
//! expiry checks: the pin is the identity) while still verifying the TLS handshake signature with
//! that certificate's key, and the quinn client config built on it. Does not fetch pins.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

use super::ClientError;

/// How the client recognises the engine's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertPin {
    /// Lowercase or uppercase hex sha256 of the leaf certificate's DER (colons allowed), as
    /// printed by the engine (`IngestServer::cert_fingerprint`).
    Sha256(String),
}

impl Default for CertPin {
    fn default() -> Self {
        CertPin::Sha256(String::new())
    }
}

impl CertPin {
    /// The pinned digest as bytes.
    fn digest(&self) -> Result<[u8; 32], ClientError> {
        let CertPin::Sha256(hex) = self;
        let clean: Vec<u8> = hex.bytes().filter(|b| !matches!(b, b':' | b' ')).collect();
        if clean.len() != 64 {
            return Err(ClientError::Config(format!(
                "certificate pin must be 64 hex digits, got {}",
                clean.len()
            )));
        }
        let mut out = [0u8; 32];
        for (i, pair) in clean.chunks_exact(2).enumerate() {
            let text = std::str::from_utf8(pair)
                .map_err(|_| ClientError::Config("certificate pin is not hex".into()))?;
            out[i] = u8::from_str_radix(text, 16)
                .map_err(|_| ClientError::Config("certificate pin is not hex".into()))?;
        }
        Ok(out)
    }
}

/// Accepts exactly the pinned leaf; verifies handshake signatures with the provider's algorithms.
#[derive(Debug)]
struct PinnedVerifier {
    /// sha256 of the accepted leaf DER.
    digest: [u8; 32],
    /// Signature algorithms for the handshake signature check.
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if got == self.digest {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The ring provider both ends use, with TLS_AES_128_GCM_SHA256 preferred over rustls's default
/// TLS_AES_256_GCM_SHA384. A handshake runs the key schedule's HMAC about 90 times; SHA-256 has
/// an instruction on common CPUs (SHA-NI, ARMv8 SHA2) and SHA-384 often not: perf put SHA-512
/// blocks at 4.8 % of the engine's ingest CPU in a handshake storm. AES-128-GCM is QUIC's
/// mandatory suite (its Initial packets use it anyway) and keeps the 128-bit security level of
/// the X25519/P-256 keys.
pub fn crypto_provider() -> CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    provider
}

/// A rustls client config (TLS 1.3, ring, ALPN `flevum/1`) trusting only the pinned leaf.
pub fn rustls_config(pin: &CertPin) -> Result<rustls::ClientConfig, ClientError> {
    let provider = Arc::new(crypto_provider());
    let verifier = PinnedVerifier {
        digest: pin.digest()?,
        provider: provider.clone(),
    };
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ClientError::Config(format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![crate::ALPN.to_vec()];
    Ok(cfg)
}

/// A quinn client config over [`rustls_config`] with the given transport settings.
pub fn quic_client_config(
    pin: &CertPin,
    transport: quinn::TransportConfig,
) -> Result<quinn::ClientConfig, ClientError> {
    let tls = rustls_config(pin)?;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| ClientError::Config(format!("QUIC crypto: {e}")))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    cfg.transport_config(Arc::new(transport));
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_parsing() {
        let hex = "AB".repeat(32);
        assert_eq!(CertPin::Sha256(hex).digest().unwrap(), [0xab; 32]);
        let colons = vec!["0f"; 32].join(":");
        assert_eq!(CertPin::Sha256(colons).digest().unwrap(), [0x0f; 32]);
        assert!(CertPin::Sha256("abc".into()).digest().is_err());
        assert!(CertPin::Sha256("zz".repeat(32)).digest().is_err());
    }
}
