//! Every open connection and what it is doing, so that at the cap the server can close an
//! idle connection instead of refusing the newcomer.
//!
//! A connection is *idle* while no request is in flight on it: from its accept until its
//! first request starts (no complete header yet), and between requests (keep-alive). At
//! the cap, the idle connection to shed is chosen in tiers, idle longest first within
//! each:
//!
//! 1. connections that have not sent a complete request yet (silent, slow, preconnected)
//!    or served just one: closing one costs its client little. One tier, not two: a tier
//!    of only fresh connections would be so small under a flood that a real client's new
//!    connection would be shed before its first request arrived;
//! 2. connections reused for two or more: a pooled client that will likely send more.
//!
//! Closing a keep-alive connection races with the client's next request, which may
//! already be on the wire; the tiers keep that race away from pooled clients while
//! anything cheaper can be closed. A connection with a request in flight is never shed:
//! when every connection is busy, the newcomer is refused.

use crate::metrics::{ConnectionMetrics, RefuseReason, ShedReason};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// The caps a registry enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Open connections at most.
    pub total: usize,
    /// Open connections per client address at most; None = unlimited.
    pub per_client: Option<usize>,
}

/// The open connections of one server (both listeners).
pub struct Registry {
    caps: Caps,
    metrics: ConnectionMetrics,
    /// Parent of every connection's close token: cancelling it asks all of them to close.
    drain: CancellationToken,
    /// A std mutex, not tokio's: each critical section is a few map operations with no
    /// await inside, taken once per accept and twice per request (never per byte).
    state: Mutex<State>,
}

/// Shedding tiers: connections with at most one request started, then the reused ones.
const TIERS: usize = 2;

fn tier(requests: u64) -> usize {
    usize::from(requests >= 2)
}

#[derive(Default)]
struct State {
    next_id: u64,
    /// Orders idle transitions without a clock: a larger tick became idle later.
    next_tick: u64,
    open: HashMap<u64, Entry>,
    /// Idle connections per tier, tick -> id: the first entry of a tier has been idle
    /// longest. A B-tree gives the oldest and removes any entry in O(log n).
    idle: [BTreeMap<u64, u64>; TIERS],
    per_client: HashMap<IpAddr, usize>,
}

struct Entry {
    peer: IpAddr,
    in_flight: usize,
    /// Requests started on it so far; picks its tier.
    requests: u64,
    /// This connection's key in its tier while no request is in flight.
    idle_tick: Option<u64>,
    close: CancellationToken,
}

impl State {
    fn tick(&mut self) -> u64 {
        self.next_tick += 1;
        self.next_tick
    }

    /// Forgets a connection; returns its entry if it was still registered.
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.open.remove(&id)?;
        if let Some(tick) = entry.idle_tick {
            self.idle[tier(entry.requests)].remove(&tick);
        }
        if let Some(n) = self.per_client.get_mut(&entry.peer) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&entry.peer);
            }
        }
        Some(entry)
    }

    /// The idle connection to shed: the first tier that has one, idle longest first.
    fn victim(&mut self) -> Option<Entry> {
        let (_, id) = self.idle.iter_mut().find_map(|t| t.pop_first())?;
        self.remove(id)
    }
}

impl Registry {
    pub fn new(caps: Caps, metrics: ConnectionMetrics) -> Arc<Registry> {
        Arc::new(Registry {
            caps,
            metrics,
            drain: CancellationToken::new(),
            state: Mutex::new(State::default()),
        })
    }

    /// Connections registered now.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.lock().open.len()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock, but a poisoned map is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new connection from `peer`. At the cap, an idle connection (see the
    /// module docs for which) is asked to close (its close token is cancelled) and its
    /// place given to the newcomer.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Admitted, RefuseReason> {
        let mut state = self.lock();
        let from_peer = state.per_client.get(&peer).copied().unwrap_or(0);
        if self.caps.per_client.is_some_and(|cap| from_peer >= cap) {
            drop(state);
            return Err(self.refuse(RefuseReason::PerClient));
        }
        let mut victim = None;
        if state.open.len() >= self.caps.total {
            let Some(v) = state.victim() else {
                drop(state);
                return Err(self.refuse(RefuseReason::Busy));
            };
            victim = Some(v);
        }
        let (id, tick) = (state.next_id, state.tick());
        state.next_id += 1;
        let close = self.drain.child_token();
        state.open.insert(
            id,
            Entry {
                peer,
                in_flight: 0,
                requests: 0,
                idle_tick: Some(tick),
                close: close.clone(),
            },
        );
        state.idle[tier(0)].insert(tick, id);
        *state.per_client.entry(peer).or_default() += 1;
        self.metrics.open.set(state.open.len() as i64);
        drop(state);
        if let Some(v) = victim {
            let reason = if v.requests > 0 {
                ShedReason::Idle
            } else {
                ShedReason::Header
            };
            self.metrics
                .shed
                .with_label_values(&[reason.as_str()])
                .inc();
            v.close.cancel();
        }
        Ok(Admitted {
            id,
            registry: self.clone(),
            close,
        })
    }

    fn refuse(&self, reason: RefuseReason) -> RefuseReason {
        self.metrics
            .refused
            .with_label_values(&[reason.as_str()])
            .inc();
        reason
    }

    /// Asks every open connection to close (shutdown): they finish what is in flight.
    pub fn close_all(&self) {
        self.drain.cancel();
    }

    fn start_request(&self, id: u64) {
        let mut state = self.lock();
        // Absent once shed: a request that slipped in while it closes is still served,
        // it just no longer counts.
        let Some(entry) = state.open.get_mut(&id) else {
            return;
        };
        entry.in_flight += 1;
        let was = tier(entry.requests);
        entry.requests += 1;
        if let Some(tick) = entry.idle_tick.take() {
            state.idle[was].remove(&tick);
        }
    }

    fn end_request(&self, id: u64) {
        let mut state = self.lock();
        let tick = state.tick();
        let Some(entry) = state.open.get_mut(&id) else {
            return;
        };
        entry.in_flight -= 1;
        if entry.in_flight == 0 {
            entry.idle_tick = Some(tick);
            let t = tier(entry.requests);
            state.idle[t].insert(tick, id);
        }
    }

    fn release(&self, id: u64) {
        let mut state = self.lock();
        if state.remove(id).is_some() {
            self.metrics.open.set(state.open.len() as i64);
        }
    }
}

/// An admitted connection's place in the registry; dropping it frees the place.
pub struct Admitted {
    id: u64,
    registry: Arc<Registry>,
    close: CancellationToken,
}

impl Admitted {
    /// Completes when the connection should close: shed for a newcomer, or shutdown.
    pub fn close_requested(&self) -> WaitForCancellationFuture<'_> {
        self.close.cancelled()
    }

    /// Marks a request in flight until the returned guard drops.
    pub fn request(&self) -> InFlight {
        self.registry.start_request(self.id);
        InFlight {
            id: self.id,
            registry: self.registry.clone(),
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.registry.release(self.id);
    }
}

/// A request in flight; see [`Admitted::request`].
pub struct InFlight {
    id: u64,
    registry: Arc<Registry>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.registry.end_request(self.id);
    }
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
