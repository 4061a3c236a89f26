//! Authentication helpers: admin bearer tokens, HMAC-SHA256 viewer share tokens, HTTP basic.
//!
//! Owns the hashing and constant-time comparison of secrets and the share-token format
//! `race_id.expiry.sig` (expiry in Unix seconds, sig = hex HMAC-SHA256 over `race_id.expiry`).
//! Does not decide who may see which race: the engine answers that for its own viewer tokens.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use sha2::{Digest, Sha256};

/// SHA-256 of a secret; only digests are kept in memory.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Compares two byte strings in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Admin bearer tokens, held as SHA-256 digests.
#[derive(Debug, Clone, Default)]
pub struct AdminTokens {
    /// Digests of the accepted tokens.
    digests: Vec<[u8; 32]>,
}

impl AdminTokens {
    /// Hashes the configured tokens (empty tokens are ignored).
    pub fn new(tokens: &[String]) -> AdminTokens {
        AdminTokens {
            digests: tokens
                .iter()
                .filter(|t| !t.is_empty())
                .map(|t| hash_token(t))
                .collect(),
        }
    }

    /// True if `token` is one of the admin tokens (every digest is compared).
    pub fn check(&self, token: &str) -> bool {
        let d = hash_token(token);
        self.digests
            .iter()
            .fold(false, |ok, known| constant_time_eq(known, &d) | ok)
    }
}

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut ipad = [0x36u8; BLOCK];
    let mut opad = [0x5cu8; BLOCK];
    for i in 0..BLOCK {
        ipad[i] ^= k[i];
        opad[i] ^= k[i];
    }
    let inner = Sha256::new()
        .chain_update(ipad)
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(opad)
        .chain_update(inner)
        .finalize()
        .into()
}

/// Lower-case hex.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// A share token for `race_id` valid until `expiry_s` (Unix seconds).
pub fn sign_share_token(secret: &str, race_id: &str, expiry_s: u64) -> String {
    let payload = format!("{race_id}.{expiry_s}");
    let sig = hmac_sha256(secret.as_bytes(), payload.as_bytes());
    format!("{payload}.{}", hex(&sig))
}

/// True if `token` is a share token for `race_id`, signed with `secret`, not expired at `now_s`.
pub fn verify_share_token(secret: &str, token: &str, race_id: &str, now_s: u64) -> bool {
    let mut parts = token.rsplitn(3, '.');
    let (Some(sig), Some(expiry), Some(race)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(expiry_s) = expiry.parse::<u64>() else {
        return false;
    };
    if race != race_id || expiry_s < now_s {
        return false;
    }
    let expected = sign_share_token(secret, race_id, expiry_s);
    constant_time_eq(expected.as_bytes(), token.as_bytes()) && !sig.is_empty()
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// `(user, password)` of an `Authorization: Basic …` header.
pub fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64_decode(b64.trim())?;
    let text = String::from_utf8(raw).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

/// Standard base64 (with or without padding).
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0u32;
    for c in s.bytes().take_while(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn hmac_matches_rfc4231() {
        // Test case 2 of RFC 4231.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            mac.to_vec(),
            unhex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        );
        // Test case 6: key longer than the block.
        let mac = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(
            mac.to_vec(),
            unhex("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
        );
    }

    #[test]
    fn share_tokens() {
        let secret = "a-very-secret-share-key";
        let t = sign_share_token(secret, "ronde.2026", 2_000);
        assert!(verify_share_token(secret, &t, "ronde.2026", 1_999));
        assert!(
            !verify_share_token(secret, &t, "ronde.2026", 2_001),
            "expired"
        );
        assert!(
            !verify_share_token(secret, &t, "other", 1_000),
            "other race"
        );
        assert!(!verify_share_token(
            "another-secret-key!",
            &t,
            "ronde.2026",
            1_000
        ));
        let forged = t.replace(".2000.", ".9999.");
        assert!(!verify_share_token(secret, &forged, "ronde.2026", 1_000));
        assert!(!verify_share_token(secret, "garbage", "ronde.2026", 1_000));
    }

    #[test]
    fn admin_tokens_and_headers() {
        let tokens = AdminTokens::new(&["0123456789abcdef".to_string(), String::new()]);
        assert!(tokens.check("0123456789abcdef"));
        assert!(!tokens.check("0123456789abcdeF"));
        assert!(!tokens.check(""));
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(AUTHORIZATION, "Basic dXNlcjpwYXNz".parse().unwrap());
        assert_eq!(basic(&h), Some(("user".into(), "pass".into())));
        assert_eq!(bearer(&h), None);
    }
}
