//! What the TLS layer decided about a device's session: resumed from a ticket, 0-RTT accepted.
//!
//! Owns the server's session-ticket cache (single use, oldest evicted first) and a thin wrapper
//! around quinn's rustls server session (it only observes: every call is passed through), so each
//! connection can report whether it resumed and whether its 0-RTT data was accepted. Does not
//! decide anything itself: rustls accepts or rejects tickets and early data, `connection` decides
//! what early data may do.

use std::any::Any;
use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use quinn::ConnectionId;
use quinn::crypto::{
    self, ExportKeyingMaterialError, HeaderKey, KeyPair, Keys, PacketKey, UnsupportedVersion,
};
use quinn_proto::TransportError;
use quinn_proto::transport_parameters::TransportParameters;
use rustls::server::StoresServerSessions;

/// What happened to the session ticket a device presented, for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TicketOutcome {
    /// No ticket presented: a full handshake (first connection of a device, or it lost its
    /// ticket store).
    #[default]
    None,
    /// The ticket was found in the cache (single use, now consumed): resumed without the
    /// certificate signature.
    Resumed,
    /// The ticket was unknown (issued by an earlier instance, evicted, or already used, which is
    /// what a replayed first flight looks like): a full handshake, any 0-RTT data discarded.
    Unknown,
}

/// What a connection's TLS handshake told about resumption; readable from
/// `Connecting::handshake_data` once the device's first flight was processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionFacts {
    /// The session ticket's fate.
    pub ticket: TicketOutcome,
    /// rustls accepted the device's 0-RTT data (so quinn delivers it before the handshake is
    /// confirmed: it may be a replay until then).
    pub zero_rtt: bool,
}

thread_local! {
    /// Set by [`CountingSessionCache::take`] while a session processes handshake bytes on this
    /// thread (rustls looks tickets up synchronously inside `read_handshake`), read back by
    /// [`ObservedSession::read_handshake`] to attribute the lookup to its connection.
    static TICKET_LOOKUP: Cell<Option<TicketOutcome>> = const { Cell::new(None) };
}

/// The server's TLS session cache: single-use tickets, oldest evicted first, O(1) lookups; records
/// each ticket lookup's outcome for the connection that made it.
///
/// rustls's own `ServerSessionMemoryCache` removes a taken ticket with a linear scan of its
/// eviction queue: at 40,000 entries that was 6 % of the ingest's CPU in a 10,000-device
/// reconnect (perf), under quinn's endpoint lock. Here a taken ticket leaves a stale queue
/// entry behind, skipped at eviction and compacted away when stale entries pile up.
#[derive(Debug)]
pub(crate) struct CountingSessionCache {
    /// Most sessions kept.
    capacity: usize,
    /// The sessions and the queue.
    inner: Mutex<SessionMap>,
}

/// The mutable part of [`CountingSessionCache`].
#[derive(Debug, Default)]
struct SessionMap {
    /// Ticket id → (session, insertion number).
    sessions: HashMap<Vec<u8>, (Vec<u8>, u64)>,
    /// Insertion order for eviction: (insertion number, ticket id); entries whose number no
    /// longer matches `sessions` are stale (taken or replaced).
    queue: VecDeque<(u64, Vec<u8>)>,
    /// Next insertion number.
    next: u64,
}

impl CountingSessionCache {
    pub(crate) fn new(capacity: usize) -> Self {
        CountingSessionCache {
            capacity: capacity.max(1),
            inner: Mutex::new(SessionMap::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SessionMap> {
        // The map stays consistent at every step, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sessions held now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().sessions.len()
    }
}

impl StoresServerSessions for CountingSessionCache {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        let mut map = self.lock();
        let map = &mut *map;
        while map.sessions.len() >= self.capacity {
            let Some((n, old)) = map.queue.pop_front() else {
                break;
            };
            if map.sessions.get(&old).is_some_and(|(_, m)| *m == n) {
                map.sessions.remove(&old);
            }
        }
        let n = map.next;
        map.next += 1;
        map.sessions.insert(key.clone(), (value, n));
        map.queue.push_back((n, key));
        if map.queue.len() > 2 * self.capacity {
            let sessions = &map.sessions;
            map.queue
                .retain(|(n, k)| sessions.get(k).is_some_and(|(_, m)| m == n));
        }
        true
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.lock().sessions.get(key).map(|(v, _)| v.clone())
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        let found = self.lock().sessions.remove(key).map(|(v, _)| v);
        let outcome = if found.is_some() {
            TicketOutcome::Resumed
        } else {
            TicketOutcome::Unknown
        };
        TICKET_LOOKUP.with(|t| t.set(Some(outcome)));
        found
    }

    fn can_cache(&self) -> bool {
        true
    }
}

/// quinn's rustls server crypto config, handing out [`ObservedSession`]s.
pub(crate) struct ObservedServerConfig {
    /// quinn's own config (does all the work).
    inner: Arc<quinn::crypto::rustls::QuicServerConfig>,
}

impl ObservedServerConfig {
    pub(crate) fn new(inner: quinn::crypto::rustls::QuicServerConfig) -> Self {
        ObservedServerConfig {
            inner: Arc::new(inner),
        }
    }
}

impl crypto::ServerConfig for ObservedServerConfig {
    fn initial_keys(
        &self,
        version: u32,
        dst_cid: &ConnectionId,
    ) -> Result<Keys, UnsupportedVersion> {
        self.inner.initial_keys(version, dst_cid)
    }

    fn retry_tag(&self, version: u32, orig_dst_cid: &ConnectionId, packet: &[u8]) -> [u8; 16] {
        self.inner.retry_tag(version, orig_dst_cid, packet)
    }

    fn start_session(
        self: Arc<Self>,
        version: u32,
        params: &TransportParameters,
    ) -> Box<dyn crypto::Session> {
        Box::new(ObservedSession {
            inner: crypto::ServerConfig::start_session(self.inner.clone(), version, params),
            ticket: AtomicU8::new(0),
            zero_rtt: AtomicBool::new(false),
        })
    }
}

/// One server TLS session, passed through, remembering the ticket outcome and whether 0-RTT
/// keys were handed to quinn (= rustls accepted the early data).
struct ObservedSession {
    /// quinn's rustls session.
    inner: Box<dyn crypto::Session>,
    /// [`TicketOutcome`] as 0 (none), 1 (resumed), 2 (unknown).
    ticket: AtomicU8,
    /// quinn asked for 0-RTT keys and rustls had them.
    zero_rtt: AtomicBool,
}

impl ObservedSession {
    fn facts(&self) -> SessionFacts {
        SessionFacts {
            ticket: match self.ticket.load(Ordering::Relaxed) {
                1 => TicketOutcome::Resumed,
                2 => TicketOutcome::Unknown,
                _ => TicketOutcome::None,
            },
            zero_rtt: self.zero_rtt.load(Ordering::Relaxed),
        }
    }
}

impl crypto::Session for ObservedSession {
    fn initial_keys(&self, dst_cid: &ConnectionId, side: quinn::Side) -> Keys {
        self.inner.initial_keys(dst_cid, side)
    }

    fn handshake_data(&self) -> Option<Box<dyn Any>> {
        // Only once quinn's session has its data (the device's first flight is processed, so the
        // ticket lookup and the early-data decision are made).
        self.inner.handshake_data()?;
        Some(Box::new(self.facts()))
    }

    fn peer_identity(&self) -> Option<Box<dyn Any>> {
        self.inner.peer_identity()
    }

    fn early_crypto(&self) -> Option<(Box<dyn HeaderKey>, Box<dyn PacketKey>)> {
        let keys = self.inner.early_crypto();
        if keys.is_some() {
            self.zero_rtt.store(true, Ordering::Relaxed);
        }
        keys
    }

    fn early_data_accepted(&self) -> Option<bool> {
        self.inner.early_data_accepted()
    }

    fn is_handshaking(&self) -> bool {
        self.inner.is_handshaking()
    }

    fn read_handshake(&mut self, buf: &[u8]) -> Result<bool, TransportError> {
        TICKET_LOOKUP.with(|t| t.set(None));
        let result = self.inner.read_handshake(buf);
        if let Some(outcome) = TICKET_LOOKUP.with(Cell::take) {
            let code = match outcome {
                TicketOutcome::None => 0,
                TicketOutcome::Resumed => 1,
                TicketOutcome::Unknown => 2,
            };
            self.ticket.store(code, Ordering::Relaxed);
        }
        result
    }

    fn transport_parameters(&self) -> Result<Option<TransportParameters>, TransportError> {
        self.inner.transport_parameters()
    }

    fn write_handshake(&mut self, buf: &mut Vec<u8>) -> Option<Keys> {
        self.inner.write_handshake(buf)
    }

    fn next_1rtt_keys(&mut self) -> Option<KeyPair<Box<dyn PacketKey>>> {
        self.inner.next_1rtt_keys()
    }

    fn is_valid_retry(&self, orig_dst_cid: &ConnectionId, header: &[u8], payload: &[u8]) -> bool {
        self.inner.is_valid_retry(orig_dst_cid, header, payload)
    }

    fn export_keying_material(
        &self,
        output: &mut [u8],
        label: &[u8],
        context: &[u8],
    ) -> Result<(), ExportKeyingMaterialError> {
        self.inner.export_keying_material(output, label, context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_are_single_use_and_the_oldest_is_evicted() {
        let cache = CountingSessionCache::new(3);
        for i in 0..3u8 {
            assert!(cache.put(vec![i], vec![i + 10]));
        }
        assert_eq!(cache.get(&[1]), Some(vec![11]));
        assert_eq!(cache.take(&[1]), Some(vec![11]));
        assert_eq!(cache.take(&[1]), None, "a ticket resumes once");
        // Room for one more without evicting; the next evicts the oldest live one (0).
        cache.put(vec![3], vec![13]);
        assert_eq!(cache.len(), 3);
        cache.put(vec![4], vec![14]);
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get(&[0]), None);
        assert_eq!(cache.get(&[2]), Some(vec![12]));
        // Many takes leave stale queue entries that are compacted away.
        for i in 5..100u8 {
            cache.put(vec![i], vec![i]);
            cache.take(&[i]);
        }
        assert!(cache.lock().queue.len() <= 6);
        assert_eq!(cache.get(&[4]), Some(vec![14]));
    }

    #[test]
    fn a_lookup_is_reported_to_the_thread_that_made_it() {
        let cache = CountingSessionCache::new(4);
        cache.put(vec![7], vec![1]);
        TICKET_LOOKUP.with(|t| t.set(None));
        cache.take(&[7]);
        assert_eq!(TICKET_LOOKUP.with(Cell::take), Some(TicketOutcome::Resumed));
        cache.take(&[7]);
        assert_eq!(TICKET_LOOKUP.with(Cell::take), Some(TicketOutcome::Unknown));
    }
}
