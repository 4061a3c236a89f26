//! Device tokens: issuing, authenticating, listing and revoking the secrets devices log in with.
//!
//! Owns the token table (sha256 of each token → its [`DeviceGrant`]) so the process never keeps a
//! token in clear after issuing it. Does not persist anything: the caller (race config, admin API)
//! re-inserts tokens at start.

use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use rand::Rng;
use sha2::{Digest, Sha256};

/// What a valid device token entitles its holder to: which race, rider and device it reports for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceGrant {
    /// The race the device reports positions for.
    pub race_id: String,
    /// The rider the device's fixes are attributed to.
    pub rider_id: u32,
    /// Stable identifier of the device, the key of its sequence numbers and rate limit.
    pub device_id: String,
    /// How often the device should report a fix, ms (sent in `Welcome`).
    pub report_interval_ms: u32,
}

/// A token as shown to organisers: no secret, only a short prefix of its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// First 12 hex digits of the token's sha256, enough to tell tokens apart in a list.
    pub hash_prefix: String,
    /// The grant the token carries.
    pub grant: DeviceGrant,
}

/// The table of valid device tokens, stored hashed. `Send + Sync`; share it as `Arc<TokenStore>`.
#[derive(Debug, Default)]
pub struct TokenStore {
    /// sha256(token) → grant. Hashing keeps clear tokens out of memory dumps and lists.
    by_hash: DashMap<[u8; 32], DeviceGrant>,
    /// Counts revocations, so that open connections notice one with a single atomic load per
    /// batch instead of a table lookup (see [`TokenStore::still_valid`]).
    revocations: AtomicU64,
}

/// An open connection's hold on the token it logged in with: which token, and the revocation
/// count it was last checked against.
#[derive(Debug, Clone)]
pub struct TokenLease {
    /// sha256 of the token (the table key).
    key: [u8; 32],
    /// `revocations` when the token was last found valid.
    checked_at: u64,
}

/// Bytes of randomness in an issued token (encoded as 2 hex digits per byte).
const TOKEN_BYTES: usize = 24;

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

impl TokenStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Issues a new random token for `grant` and returns it; this is the only time it is visible.
    pub fn issue(&self, grant: DeviceGrant) -> String {
        let mut bytes = [0u8; TOKEN_BYTES];
        rand::rng().fill(&mut bytes[..]);
        let token = format!("flv_{}", hex(&bytes));
        self.insert(&token, grant);
        token
    }

    /// The SHA-256 of `token` in hex, as [`TokenStore::hashes`] lists it and
    /// [`TokenStore::insert_hash`] takes it (for persisting one newly issued token).
    pub fn sha256_hex(token: &str) -> String {
        hex(&hash(token))
    }

    /// Registers a token chosen elsewhere (a race config file) for `grant`.
    pub fn insert(&self, token: &str, grant: DeviceGrant) {
        self.by_hash.insert(hash(token), grant);
    }

    /// Registers a token known only by its SHA-256 (64 hex digits), as race configs and the
    /// persisted token list hold them. Returns false (and registers nothing) for a malformed hash.
    pub fn insert_hash(&self, sha256_hex: &str, grant: DeviceGrant) -> bool {
        let hex = sha256_hex.as_bytes();
        if hex.len() != 64 {
            return false;
        }
        let mut hash = [0u8; 32];
        for (i, pair) in hex.chunks(2).enumerate() {
            let digit = |c: u8| (c as char).to_digit(16);
            match (digit(pair[0]), digit(pair[1])) {
                (Some(hi), Some(lo)) => hash[i] = (hi * 16 + lo) as u8,
                _ => return false,
            }
        }
        self.by_hash.insert(hash, grant);
        true
    }

    /// The grant of `token`, or `None` when it is unknown or revoked.
    pub fn authenticate(&self, token: &str) -> Option<DeviceGrant> {
        self.by_hash.get(&hash(token)).map(|g| g.value().clone())
    }

    /// The grant of `token` and a lease that tells later whether it is still valid.
    pub fn authenticate_lease(&self, token: &str) -> Option<(DeviceGrant, TokenLease)> {
        // Read the count first: a revocation racing with this login bumps it afterwards, so the
        // first `still_valid` looks the token up again.
        let checked_at = self.revocations.load(Ordering::Acquire);
        let key = hash(token);
        let grant = self.by_hash.get(&key)?.value().clone();
        Some((grant, TokenLease { key, checked_at }))
    }

    /// Whether the token behind `lease` is still valid: free while nothing was revoked since the
    /// last check, one table lookup otherwise.
    pub fn still_valid(&self, lease: &mut TokenLease) -> bool {
        let now = self.revocations.load(Ordering::Acquire);
        if now == lease.checked_at {
            return true;
        }
        let valid = self.by_hash.contains_key(&lease.key);
        if valid {
            lease.checked_at = now;
        }
        valid
    }

    /// Revokes every token of `device_id` in `race_id`; returns how many were removed. Open
    /// connections that logged in with one of them are closed at their next batch.
    pub fn revoke_device(&self, race_id: &str, device_id: &str) -> usize {
        let before = self.by_hash.len();
        self.by_hash
            .retain(|_, g| !(g.race_id == race_id && g.device_id == device_id));
        let removed = before.saturating_sub(self.by_hash.len());
        if removed > 0 {
            self.revocations.fetch_add(1, Ordering::AcqRel);
        }
        removed
    }

    /// The tokens of a race, without secrets, sorted by rider then device.
    pub fn list(&self, race_id: &str) -> Vec<TokenInfo> {
        let mut out: Vec<TokenInfo> = self
            .by_hash
            .iter()
            .filter(|e| e.value().race_id == race_id)
            .map(|e| TokenInfo {
                hash_prefix: hex(&e.key()[..6]),
                grant: e.value().clone(),
            })
            .collect();
        out.sort_by(|a, b| {
            (a.grant.rider_id, &a.grant.device_id).cmp(&(b.grant.rider_id, &b.grant.device_id))
        });
        out
    }

    /// Number of valid tokens (all races).
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether no token is valid.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(device: &str, rider: u32) -> DeviceGrant {
        DeviceGrant {
            race_id: "r1".into(),
            rider_id: rider,
            device_id: device.into(),
            report_interval_ms: 1000,
        }
    }

    #[test]
    fn a_lease_sees_its_own_revocation_and_no_other() {
        let store = TokenStore::new();
        let mine = store.issue(grant("d1", 1));
        let other = store.issue(grant("d2", 2));
        let (_, mut lease) = store.authenticate_lease(&mine).unwrap();
        let (_, mut other_lease) = store.authenticate_lease(&other).unwrap();
        assert!(store.still_valid(&mut lease));
        assert_eq!(store.revoke_device("r1", "d2"), 1);
        assert!(store.still_valid(&mut lease), "another device's revocation");
        assert!(!store.still_valid(&mut other_lease));
        assert_eq!(store.revoke_device("r1", "d1"), 1);
        assert!(!store.still_valid(&mut lease));
        assert!(store.authenticate_lease(&mine).is_none());
    }

    #[test]
    fn issue_authenticate_revoke() {
        let store = TokenStore::new();
        let a = store.issue(grant("d1", 1));
        let b = store.issue(grant("d2", 2));
        assert_ne!(a, b);
        assert_eq!(store.authenticate(&a), Some(grant("d1", 1)));
        assert_eq!(store.authenticate("nope"), None);
        assert_eq!(store.revoke_device("r1", "d1"), 1);
        assert_eq!(store.authenticate(&a), None);
        assert_eq!(store.authenticate(&b), Some(grant("d2", 2)));
        assert_eq!(store.revoke_device("r1", "d1"), 0);
    }

    #[test]
    fn a_token_registered_by_its_hash_authenticates() {
        let store = TokenStore::new();
        let token = "secret-token-1";
        let h = hex(&hash(token));
        assert!(store.insert_hash(&h, grant("d1", 1)));
        assert_eq!(store.authenticate(token), Some(grant("d1", 1)));
        assert!(!store.insert_hash("zz", grant("d2", 2)));
        assert!(!store.insert_hash(&"g".repeat(64), grant("d2", 2)));
        // Only the valid hash was registered, under its own grant.
        let list = store.list("r1");
        assert_eq!(list.len(), 1);
        assert!(h.starts_with(&list[0].hash_prefix), "{h} {:?}", list[0]);
        assert_eq!(list[0].grant, grant("d1", 1));
    }

    #[test]
    fn list_hides_secrets() {
        let store = TokenStore::new();
        store.insert("secret-token", grant("d1", 1));
        let list = store.list("r1");
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].hash_prefix.len(), 12);
        assert!(!format!("{list:?}").contains("secret-token"));
        assert!(store.list("other").is_empty());
    }
}
