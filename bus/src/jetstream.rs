//! JetStream building blocks for the replicated journal and race ownership:
//! [`JetStreamJournal`] (one stream per race, `race.<id>.journal`, an append resolves only once
//! JetStream acknowledged every entry) and [`RaceLease`] (a key per race in a KV bucket whose
//! max age is the lease time: the owner renews by revision, another engine takes over once the
//! key expired).
//!
//! Entries are opaque bytes: the binary's adapter stores one encoded batch of engine journal
//! entries per message and fences its writes with [`JetStreamJournal::publish_after`]
//! (`Nats-Expected-Last-Sequence`), so an engine that lost its lease cannot append.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, stream};
use bytes::Bytes;
use futures_util::StreamExt;

use crate::{BusError, subjects};

/// KV bucket holding one lease key per race (value: the owner's name).
pub const LEASE_BUCKET: &str = "flevum-race-owners";

/// Settings of the JetStream journal and leases.
#[derive(Debug, Clone, PartialEq)]
pub struct JetStreamConfig {
    /// Replicas of each race stream and of the lease bucket (1 for a single server, 3 in a
    /// three-node cluster).
    pub replicas: usize,
    /// How long a lease lives without renewal; the owner renews at a third of it.
    pub lease_ttl: Duration,
}

impl Default for JetStreamConfig {
    fn default() -> Self {
        JetStreamConfig {
            replicas: 1,
            lease_ttl: Duration::from_secs(10),
        }
    }
}

fn js_err(subject: &str, e: impl std::fmt::Display) -> BusError {
    BusError::Request {
        subject: subject.to_string(),
        message: e.to_string(),
    }
}

/// Subject of a race's journal entries.
pub fn journal_subject(race_id: &str) -> String {
    format!("race.{race_id}.journal")
}

/// Name of a race's journal stream.
pub fn stream_name(race_id: &str) -> String {
    format!("FLEVUM_RACE_{race_id}")
}

/// A race's journal on JetStream.
#[derive(Clone)]
pub struct JetStreamJournal {
    /// JetStream context.
    js: jetstream::Context,
    /// The race's stream.
    stream: stream::Stream,
    /// Subject entries are published on.
    subject: String,
}

impl JetStreamJournal {
    /// Opens (creating if needed) the stream of `race_id`.
    pub async fn open(
        client: async_nats::Client,
        race_id: &str,
        config: &JetStreamConfig,
    ) -> Result<JetStreamJournal, BusError> {
        subjects::check_race_id(race_id)?;
        let js = jetstream::new(client);
        let subject = journal_subject(race_id);
        let stream = js
            .get_or_create_stream(stream::Config {
                name: stream_name(race_id),
                subjects: vec![subject.clone()],
                num_replicas: config.replicas.max(1),
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| js_err(&subject, e))?;
        Ok(JetStreamJournal {
            js,
            stream,
            subject,
        })
    }

    /// Appends entries; resolves with the last stream sequence once JetStream acknowledged
    /// every one of them (stored on a quorum of replicas). Nothing is acknowledged on error.
    pub async fn append(&self, entries: Vec<Bytes>) -> Result<u64, BusError> {
        let mut acks = Vec::with_capacity(entries.len());
        for e in entries {
            acks.push(
                self.js
                    .publish(self.subject.clone(), e)
                    .await
                    .map_err(|e| js_err(&self.subject, e))?,
            );
        }
        let mut last = 0;
        for ack in acks {
            last = ack.await.map_err(|e| js_err(&self.subject, e))?.sequence;
        }
        Ok(last)
    }

    /// Publishes `payload`, which JetStream stores only if the stream's last sequence is still
    /// `expected_last` (no other writer came between); the returned future resolves with the
    /// stored sequence once JetStream acknowledged it.
    pub async fn publish_after(
        &self,
        payload: Bytes,
        expected_last: u64,
    ) -> Result<jetstream::context::PublishAckFuture, FencedAppendError> {
        self.js
            .send_publish(
                self.subject.clone(),
                jetstream::message::PublishMessage::build()
                    .payload(payload)
                    .expected_last_sequence(expected_last),
            )
            .await
            .map_err(|e| FencedAppendError::classify(&self.subject, e))
    }

    /// Waits for the acknowledgement of a [`JetStreamJournal::publish_after`]: the stored
    /// sequence.
    pub async fn acknowledged(
        &self,
        ack: jetstream::context::PublishAckFuture,
    ) -> Result<u64, FencedAppendError> {
        ack.await
            .map(|a| a.sequence)
            .map_err(|e| FencedAppendError::classify(&self.subject, e))
    }

    /// The stream's last sequence now (0 when empty).
    pub async fn last_sequence(&self) -> Result<u64, BusError> {
        let info = self
            .stream
            .get_info()
            .await
            .map_err(|e| js_err(&self.subject, e))?;
        Ok(info.state.last_sequence)
    }

    /// Replays every message stored up to now, in order, into `f`; returns the stream's last
    /// sequence at the start of the replay (what the next fenced append must expect).
    pub async fn replay_to_last(&self, mut f: impl FnMut(Bytes)) -> Result<u64, BusError> {
        let info = self
            .stream
            .get_info()
            .await
            .map_err(|e| js_err(&self.subject, e))?;
        let last = info.state.last_sequence;
        if info.state.messages == 0 {
            return Ok(last);
        }
        let consumer = self
            .stream
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(|e| js_err(&self.subject, e))?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| js_err(&self.subject, e))?;
        while let Some(m) = messages.next().await {
            let m = m.map_err(|e| js_err(&self.subject, e))?;
            let seq = m
                .info()
                .map_err(|e| js_err(&self.subject, e))?
                .stream_sequence;
            f(m.payload.clone());
            if seq >= last {
                return Ok(last);
            }
        }
        Err(js_err(
            &self.subject,
            "replay ended before the last message",
        ))
    }

    /// Replays every entry in order into `f`; returns how many there were.
    pub async fn replay(&mut self, mut f: impl FnMut(Bytes)) -> Result<u64, BusError> {
        let mut seen = 0;
        self.replay_to_last(|entry| {
            seen += 1;
            f(entry);
        })
        .await?;
        Ok(seen)
    }
}

/// Why a fenced append failed.
#[derive(Debug, thiserror::Error)]
pub enum FencedAppendError {
    /// The stream's last sequence was not the expected one: another writer appended (a new
    /// owner of the race) or an earlier append of ours failed in between.
    #[error("journal {0}: wrong last sequence (another writer, or an earlier append failed)")]
    WrongLastSequence(String),
    /// Anything else (connection lost, no acknowledgement in time): the entry may or may not
    /// have been stored.
    #[error("{0}")]
    Other(BusError),
}

impl FencedAppendError {
    fn classify(subject: &str, e: jetstream::context::PublishError) -> FencedAppendError {
        if e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence {
            FencedAppendError::WrongLastSequence(subject.to_string())
        } else {
            FencedAppendError::Other(js_err(subject, e))
        }
    }
}

/// Ownership of one race by one engine, held in the KV bucket [`LEASE_BUCKET`].
pub struct RaceLease {
    /// The bucket.
    store: kv::Store,
    /// The race (key).
    race_id: String,
    /// Revision of our last write; a renewal must match it.
    revision: u64,
    /// Our name (value).
    owner: String,
}

/// Opens (creating if needed) the lease bucket.
pub async fn lease_bucket(
    client: async_nats::Client,
    config: &JetStreamConfig,
) -> Result<kv::Store, BusError> {
    let js = jetstream::new(client);
    if let Ok(store) = js.get_key_value(LEASE_BUCKET).await {
        return Ok(store);
    }
    // The bucket's backing stream is made by hand: `create_key_value` of async-nats 0.51
    // cannot read nats-server 2.9's answer. Same settings as a KV bucket with history 1.
    js.get_or_create_stream(stream::Config {
        name: format!("KV_{LEASE_BUCKET}"),
        subjects: vec![format!("$KV.{LEASE_BUCKET}.>")],
        max_messages_per_subject: 1,
        max_age: config.lease_ttl,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        num_replicas: config.replicas.max(1),
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| js_err(LEASE_BUCKET, e))?;
    js.get_key_value(LEASE_BUCKET)
        .await
        .map_err(|e| js_err(LEASE_BUCKET, e))
}

impl RaceLease {
    /// Takes the race if nobody holds it (or the holder's lease expired); None if held.
    pub async fn try_acquire(
        store: &kv::Store,
        race_id: &str,
        owner: &str,
    ) -> Result<Option<RaceLease>, BusError> {
        subjects::check_race_id(race_id)?;
        match store.create(race_id, Bytes::from(owner.to_string())).await {
            Ok(revision) => Ok(Some(RaceLease {
                store: store.clone(),
                race_id: race_id.to_string(),
                revision,
                owner: owner.to_string(),
            })),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(js_err(race_id, e)),
        }
    }

    /// Renews the lease; an error means it was lost (expired and taken) and the race must be
    /// given up at once.
    pub async fn renew(&mut self) -> Result<(), BusError> {
        self.revision = self
            .store
            .update(
                &self.race_id,
                Bytes::from(self.owner.clone()),
                self.revision,
            )
            .await
            .map_err(|e| js_err(&self.race_id, e))?;
        Ok(())
    }

    /// Gives the race up now (clean shutdown) so another engine need not wait for expiry.
    pub async fn release(self) -> Result<(), BusError> {
        self.store
            .delete(&self.race_id)
            .await
            .map_err(|e| js_err(&self.race_id, e))
    }

    /// The owner of a race now, if any.
    pub async fn owner(store: &kv::Store, race_id: &str) -> Result<Option<String>, BusError> {
        let v = store.get(race_id).await.map_err(|e| js_err(race_id, e))?;
        Ok(v.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }
}
