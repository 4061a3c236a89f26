//! The production [`IngestSink`]: routes a device's records to its race shard (journal, then race).
//!
//! Owns only the race id → [`RaceHandle`] routing table and the error mapping. Does not journal or
//! track sequences itself: `RaceHandle::submit` resolves once durable and `durable_seq` is the
//! shard's own contiguous sequence per rider.

use dashmap::DashMap;

use super::sink::{IngestSink, SubmitError, SubmitFuture};
use super::tokens::DeviceGrant;
use crate::shard::{RaceHandle, ShardError};
use flevum_protocol::PositionRecord;

/// Routes ingest submissions to the open races' shards.
#[derive(Default)]
pub struct ShardSink {
    /// Open races by id; a race missing here refuses records as closed.
    races: DashMap<String, RaceHandle>,
}

impl ShardSink {
    /// An empty routing table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes `race_id`'s devices to `handle` (replacing an earlier handle of the same race).
    pub fn insert(&self, race_id: &str, handle: RaceHandle) {
        self.races.insert(race_id.to_string(), handle);
    }

    /// Stops routing to a race (closed or finished); its devices are then refused records.
    pub fn remove(&self, race_id: &str) -> Option<RaceHandle> {
        self.races.remove(race_id).map(|(_, h)| h)
    }
}

impl IngestSink for ShardSink {
    fn submit(&self, grant: &DeviceGrant, records: Vec<PositionRecord>) -> SubmitFuture {
        let handle = self.races.get(&grant.race_id).map(|h| h.value().clone());
        let race_id = grant.race_id.clone();
        let rider_id = grant.rider_id;
        Box::pin(async move {
            let Some(handle) = handle else {
                return Err(SubmitError::RaceClosed(race_id));
            };
            handle.submit(rider_id, records).await.map_err(|e| match e {
                ShardError::Stopped => SubmitError::RaceClosed(race_id),
                other => SubmitError::Unavailable(other.to_string()),
            })
        })
    }

    fn durable_seq(&self, grant: &DeviceGrant) -> u32 {
        self.races
            .get(&grant.race_id)
            .map_or(0, |h| h.durable_seq(grant.rider_id))
    }
}
