//! The tamper-evident audit log: one event per state-changing request and per denial,
//! each hashed together with the previous event's hash, so editing, deleting or
//! reordering any stored event breaks the chain at a place [`verify`] names.

use sha2::{Digest, Sha256};

/// The hash the first event links to.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One event, as the HTTP layer describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// Milliseconds since the epoch.
    pub time_ms: i64,
    /// Username, or `anonymous`.
    pub actor: String,
    /// How the actor proved who they are: `basic`, `token`, `oidc`, or `none`.
    pub auth_method: String,
    /// The client's address.
    pub source_ip: String,
    /// `METHOD /route` (the route pattern, e.g. `POST /api/2.0/mlflow/runs/create`).
    pub action: String,
    /// What it acted on (`experiment:3`, `run:abc...`, `registered-model:m`), or empty.
    pub resource: String,
    /// `ok`, `denied`, `unauthenticated`, or `error:<status>`.
    pub outcome: String,
    /// The `x-request-id` of the request.
    pub request_id: String,
}

/// An event as stored: its place in the chain and the two hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAuditEvent {
    /// 1, 2, 3, ... with no gaps.
    pub seq: i64,
    /// The event.
    pub event: AuditEvent,
    /// The previous event's `hash` (`GENESIS` for the first).
    pub prev_hash: String,
    /// `chain_hash(seq, event, prev_hash)`.
    pub hash: String,
}

/// The columns of an audit row, in table order: seq, time, actor, auth method, source
/// address, action, resource, outcome, request id, previous hash, hash.
pub type AuditRow = (
    i64,
    i64,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
);

impl From<AuditRow> for StoredAuditEvent {
    fn from(row: AuditRow) -> Self {
        let (
            seq,
            time_ms,
            actor,
            auth_method,
            source_ip,
            action,
            resource,
            outcome,
            request_id,
            prev_hash,
            hash,
        ) = row;
        StoredAuditEvent {
            seq,
            event: AuditEvent {
                time_ms,
                actor,
                auth_method,
                source_ip,
                action,
                resource,
                outcome,
                request_id,
            },
            prev_hash,
            hash,
        }
    }
}

/// SHA-256 (hex) over the sequence number, every field (length-prefixed, so no two
/// different events serialise alike) and the previous hash.
pub fn chain_hash(seq: i64, e: &AuditEvent, prev_hash: &str) -> String {
    let mut h = Sha256::new();
    h.update(seq.to_be_bytes());
    h.update(e.time_ms.to_be_bytes());
    for field in [
        &e.actor,
        &e.auth_method,
        &e.source_ip,
        &e.action,
        &e.resource,
        &e.outcome,
        &e.request_id,
        &prev_hash.to_string(),
    ] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The stored form of the event that follows `prev` (`None`: the first event).
pub fn next_link(prev: Option<(i64, &str)>, event: AuditEvent) -> StoredAuditEvent {
    let (seq, prev_hash) = match prev {
        Some((seq, hash)) => (seq + 1, hash.to_string()),
        None => (1, GENESIS.to_string()),
    };
    let hash = chain_hash(seq, &event, &prev_hash);
    StoredAuditEvent {
        seq,
        event,
        prev_hash,
        hash,
    }
}

/// The columns of an event waiting to be sealed: its insertion key, then the event's
/// fields in table order.
pub type PendingRow = (
    i64,
    i64,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
);

/// Most events sealed per transaction.
pub const SEAL_BATCH: i64 = 5_000;

/// How often each store's sealer runs.
pub const SEAL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// The links for `pending` events (in insertion order) after the chain's last sealed
/// link `last`: each event's insertion key with its position and hashes.
pub fn seal_links(
    last: Option<(i64, String)>,
    pending: Vec<PendingRow>,
) -> Vec<(i64, StoredAuditEvent)> {
    let mut head = last;
    pending
        .into_iter()
        .map(
            |(
                id,
                time_ms,
                actor,
                auth_method,
                source_ip,
                action,
                resource,
                outcome,
                request_id,
            )| {
                let event = AuditEvent {
                    time_ms,
                    actor,
                    auth_method,
                    source_ip,
                    action,
                    resource,
                    outcome,
                    request_id,
                };
                let link = next_link(head.as_ref().map(|(s, h)| (*s, h.as_str())), event);
                head = Some((link.seq, link.hash.clone()));
                (id, link)
            },
        )
        .collect()
}

/// Runs `seal` every `SEAL_INTERVAL` until `closed` says the store is gone (the task is
/// also aborted when the store is dropped).
pub async fn run_sealer<E, F, Fut>(closed: impl Fn() -> bool, seal: F)
where
    E: std::fmt::Display,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<u64, E>>,
{
    loop {
        tokio::time::sleep(SEAL_INTERVAL).await;
        if closed() {
            return;
        }
        if let Err(e) = seal().await {
            tracing::warn!(error = %e, "sealing the audit log failed; retrying");
        }
    }
}

/// The first break found in a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainBreak {
    /// The event's content no longer matches its hash: it was edited.
    Edited { seq: i64 },
    /// Sequence numbers jump from `after` to `next`: events in between were deleted.
    Missing { after: i64, next: i64 },
    /// The event does not link to the one stored before it: events were reordered,
    /// replaced or removed with their numbers rewritten.
    Unlinked { seq: i64 },
}

impl std::fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChainBreak::Edited { seq } => {
                write!(
                    f,
                    "event {seq} was edited: its content does not match its hash"
                )
            }
            ChainBreak::Missing { after, next } if next - after == 2 => {
                write!(
                    f,
                    "event {} was deleted (found {after} then {next})",
                    after + 1
                )
            }
            ChainBreak::Missing { after, next } => write!(
                f,
                "events {}..={} were deleted (found {after} then {next})",
                after + 1,
                next - 1
            ),
            ChainBreak::Unlinked { seq } => write!(
                f,
                "event {seq} does not follow the event stored before it: events were \
                 reordered or replaced"
            ),
        }
    }
}

/// Checks events read in `seq` order, one at a time, so a log of any length verifies in
/// constant memory. Feed every event to [`Verifier::push`]; it returns the first break.
#[derive(Debug, Default)]
pub struct Verifier {
    last: Option<(i64, String)>,
    checked: u64,
}

impl Verifier {
    /// A verifier at the start of the chain.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the next stored event.
    pub fn push(&mut self, e: &StoredAuditEvent) -> Result<(), ChainBreak> {
        let (expected_seq, expected_prev) = match &self.last {
            Some((seq, hash)) => (seq + 1, hash.as_str()),
            None => (1, GENESIS),
        };
        if chain_hash(e.seq, &e.event, &e.prev_hash) != e.hash {
            return Err(ChainBreak::Edited { seq: e.seq });
        }
        if e.seq > expected_seq {
            return Err(ChainBreak::Missing {
                after: expected_seq - 1,
                next: e.seq,
            });
        }
        if e.seq != expected_seq || e.prev_hash != expected_prev {
            return Err(ChainBreak::Unlinked { seq: e.seq });
        }
        self.last = Some((e.seq, e.hash.clone()));
        self.checked += 1;
        Ok(())
    }

    /// Events verified so far.
    pub fn checked(&self) -> u64 {
        self.checked
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn event(i: i64) -> AuditEvent {
        AuditEvent {
            time_ms: 1_700_000_000_000 + i,
            actor: "alice".into(),
            auth_method: "basic".into(),
            source_ip: "127.0.0.1".into(),
            action: "POST /api/2.0/mlflow/runs/create".into(),
            resource: format!("experiment:{i}"),
            outcome: "ok".into(),
            request_id: format!("req-{i}"),
        }
    }

    fn chain(n: i64) -> Vec<StoredAuditEvent> {
        let mut out: Vec<StoredAuditEvent> = Vec::new();
        for i in 0..n {
            let prev = out.last().map(|e| (e.seq, e.hash.as_str()));
            let next = next_link(prev, event(i));
            out.push(next);
        }
        out
    }

    fn first_break(events: &[StoredAuditEvent]) -> Option<ChainBreak> {
        let mut v = Verifier::new();
        events.iter().find_map(|e| v.push(e).err())
    }

    #[test]
    fn an_intact_chain_verifies() {
        let events = chain(5);
        assert_eq!(first_break(&events), None);
        assert_eq!(events[0].prev_hash, GENESIS);
        assert_eq!(events[4].seq, 5);
    }

    #[test]
    fn edits_deletions_and_swaps_are_named() {
        let mut edited = chain(5);
        edited[2].event.actor = "mallory".into();
        assert_eq!(first_break(&edited), Some(ChainBreak::Edited { seq: 3 }));

        let mut deleted = chain(5);
        deleted.remove(1);
        let b = first_break(&deleted).unwrap();
        assert_eq!(b, ChainBreak::Missing { after: 1, next: 3 });
        assert_eq!(b.to_string(), "event 2 was deleted (found 1 then 3)");

        // Two whole rows exchanged (contents and hashes), numbers kept in place.
        let mut swapped = chain(5);
        let (a, b) = (swapped[1].clone(), swapped[2].clone());
        swapped[1] = StoredAuditEvent { seq: 2, ..b };
        swapped[2] = StoredAuditEvent { seq: 3, ..a };
        assert_eq!(first_break(&swapped), Some(ChainBreak::Edited { seq: 2 }));

        // Rows exchanged with their numbers (read back in seq order, so the order is
        // what the numbers say): the hashes still name the break.
        let mut reordered = chain(5);
        reordered.swap(1, 2);
        assert!(matches!(
            first_break(&reordered),
            Some(ChainBreak::Missing { after: 1, next: 3 })
        ));

        // The tail deleted and the last event re-hashed by someone without the history
        // is caught at the rewritten link.
        let mut forged = chain(3);
        forged[2].prev_hash = GENESIS.into();
        forged[2].hash = chain_hash(3, &forged[2].event, GENESIS);
        assert_eq!(first_break(&forged), Some(ChainBreak::Unlinked { seq: 3 }));
    }
}
