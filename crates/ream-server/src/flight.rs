//! Single-flight: requests identical in report, bound parameters, format, encoding and
//! the actor context the spec reads ([`ream_engine::Checked::flight`]) share one run on
//! this instance. The run's pump sends each chunk to every subscriber, so one query
//! feeds them all and every client gets the same bytes; a download may also join an
//! async run's stream (its output is stored all the same).
//!
//! A subscriber that joins late first gets the chunks already sent, which the flight keeps
//! while they total at most [`REPLAY_BYTES`]; past that nobody can join and the chunks
//! are let go, so a flight holds no more than that however long it streams.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

/// A chunk of a response body, or the error that ends it.
pub type Chunk = Result<Bytes, std::io::Error>;

/// What a flight keeps for late subscribers. Identical requests come together (a
/// double-click, a dashboard's many viewers); most join while the run is still preparing,
/// before its first chunk. 1 MiB keeps 20 concurrent exports within 20 MiB.
pub const REPLAY_BYTES: usize = 1 << 20;

/// One run's output, fanned out to its subscribers.
pub struct Flight {
    key: String,
    /// The run's id and cancel token, once registered (a subscriber may join while it
    /// is being registered).
    pub run: OnceLock<(String, ream_core::CancelToken)>,
    /// The run writes to the output store: it goes on without any subscriber.
    stored: bool,
    inner: Mutex<Inner>,
    /// Set when the run's pump has ended: the subscribers' watchers let go.
    done: watch::Sender<bool>,
}

struct Inner {
    subscribers: Vec<mpsc::Sender<Chunk>>,
    replay: Vec<Bytes>,
    replay_bytes: usize,
    joinable: bool,
}

/// A subscriber: the chunks sent before it joined, then the rest as they come.
pub struct Subscription {
    pub replay: Vec<Bytes>,
    pub rx: mpsc::Receiver<Chunk>,
    /// The sender's other end, for a watcher of the client going away.
    pub tx: mpsc::Sender<Chunk>,
    pub done: watch::Receiver<bool>,
}

impl Flight {
    fn new(key: &str, stored: bool) -> Arc<Flight> {
        let inner = Inner { subscribers: Vec::new(), replay: Vec::new(), replay_bytes: 0, joinable: true };
        Arc::new(Flight {
            key: key.to_string(),
            run: OnceLock::new(),
            stored,
            inner: Mutex::new(inner),
            done: watch::channel(false).0,
        })
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Subscribe, unless the flight is past its replay bytes or over.
    pub fn subscribe(&self) -> Option<Subscription> {
        let mut inner = self.inner();
        if !inner.joinable {
            return None;
        }
        let (tx, rx) = mpsc::channel(2);
        inner.subscribers.push(tx.clone());
        Some(Subscription { replay: inner.replay.clone(), rx, tx, done: self.done.subscribe() })
    }

    /// Send `chunk` to every subscriber, waiting for the slowest (the pump's thread
    /// blocks: backpressure). Returns whether the run should go on: it has a subscriber
    /// left, or it is stored.
    pub fn send(&self, chunk: Bytes) -> bool {
        let subscribers = {
            let mut inner = self.inner();
            if inner.joinable && inner.replay_bytes + chunk.len() <= REPLAY_BYTES {
                inner.replay_bytes += chunk.len();
                inner.replay.push(chunk.clone());
            } else if inner.joinable {
                inner.joinable = false;
                inner.replay = Vec::new();
            }
            inner.subscribers.clone()
        };
        for tx in &subscribers {
            let _ = tx.blocking_send(Ok(chunk.clone()));
        }
        self.live()
    }

    /// Whether anyone still reads, or the run is stored.
    pub fn live(&self) -> bool {
        let mut inner = self.inner();
        inner.subscribers.retain(|tx| !tx.is_closed());
        self.stored || !inner.subscribers.is_empty()
    }

    /// The run ended: each subscriber's body ends cleanly, or with `error`.
    fn end(&self, error: Option<&str>) {
        let subscribers = {
            let mut inner = self.inner();
            inner.joinable = false;
            inner.replay = Vec::new();
            std::mem::take(&mut inner.subscribers)
        };
        if let Some(message) = error {
            for tx in &subscribers {
                let _ = tx.blocking_send(Err(std::io::Error::other(message.to_string())));
            }
        }
        let _ = self.done.send(true);
    }
}

/// Watch `sub`'s client: when it goes away and nobody else reads an unstored flight,
/// the run is cancelled, even while its pump waits on the database.
pub fn watch_client(flight: Arc<Flight>, tx: mpsc::Sender<Chunk>, mut done: watch::Receiver<bool>) {
    tokio::spawn(async move {
        tokio::select! {
            _ = tx.closed() => {
                if !flight.live() {
                    if let Some((_, cancel)) = flight.run.get() {
                        cancel.cancel();
                    }
                }
            }
            _ = done.wait_for(|d| *d) => {}
        }
    });
}

/// A subscriber that joined: wait for its first chunk. None if the flight ended before
/// sending any (its run failed to start): the request should start its own.
pub async fn first_chunk(mut sub: Subscription) -> Option<Subscription> {
    if !sub.replay.is_empty() {
        return Some(sub);
    }
    match sub.rx.recv().await {
        Some(Ok(chunk)) => {
            sub.replay.push(chunk);
            Some(sub)
        }
        _ => None,
    }
}

/// This instance's flights, by key.
#[derive(Default)]
pub struct Flights {
    flights: Mutex<HashMap<String, Arc<Flight>>>,
}

/// What a request does with a flight: lead a new one, or join the one going.
pub enum Role {
    Lead(Arc<Flight>),
    Join(Arc<Flight>, Subscription),
}

impl Flights {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Flight>>> {
        self.flights.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Join the flight of `key` if one is going and still joinable, else lead a new one
    /// (decided under one lock, so of identical requests at once exactly one leads).
    pub fn join_or_lead(&self, key: &str, stored: bool) -> Role {
        let mut map = self.map();
        if let Some(flight) = map.get(key) {
            if let Some(sub) = flight.subscribe() {
                return Role::Join(flight.clone(), sub);
            }
        }
        let flight = Flight::new(key, stored);
        map.insert(key.to_string(), flight.clone());
        Role::Lead(flight)
    }

    /// Lead a new flight of `key`, which later requests join (one already going keeps
    /// its subscribers).
    pub fn lead(&self, key: &str, stored: bool) -> Arc<Flight> {
        let flight = Flight::new(key, stored);
        self.map().insert(key.to_string(), flight.clone());
        flight
    }

    /// The flight is over (or never started): later requests start their own, and each
    /// subscriber's body ends, cleanly or with `error`. Closing twice is harmless.
    pub fn close(&self, flight: &Flight, error: Option<&str>) {
        {
            let mut map = self.map();
            if map.get(&flight.key).is_some_and(|f| std::ptr::eq(Arc::as_ptr(f), flight)) {
                map.remove(&flight.key);
            }
        }
        flight.end(error);
    }
}
