//! Docker's events, kept and streamed by every service the same way.
//!
//! Each service publishes what happens to its objects on an [`EventBus`]: a
//! bounded history (for `docker events --since`) and a broadcast to live
//! subscribers. A subscriber that falls more than the broadcast's capacity
//! behind is dropped (its stream ends), so a slow client never holds up the
//! engine. The gateway reads buses through [`EventSource`]: the bus itself in
//! `berthd`, or [`EventsGrpcClient`] for a service in its own process, served
//! there by [`events_server`].

use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use berth_proto::events::v1 as pb;
use berth_proto::events::v1::events_service_client::EventsServiceClient;
use berth_proto::events::v1::events_service_server::{EventsService, EventsServiceServer};
use futures_core::Stream;
use tokio::sync::broadcast;
use tonic::transport::Channel;

use crate::Result;

pub use pb::Event;

/// A stream of events, oldest first.
pub type EventStream = Pin<Box<dyn Stream<Item = Event> + Send>>;

/// Events kept for `--since`, per bus (dockerd keeps 256; a compose project
/// coming up makes more than that).
pub const HISTORY: usize = 4096;
/// Events a live subscriber may fall behind before it is dropped.
pub const BACKLOG: usize = 1024;

/// One service's events: history and live broadcast.
#[derive(Debug)]
pub struct EventBus {
    tx: broadcast::Sender<(u64, Event)>,
    kept: Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    next: u64,
    events: VecDeque<(u64, Event)>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    /// An empty bus.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(BACKLOG);
        EventBus { tx, kept: Mutex::new(Kept::default()) }
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        // Plain data: a panic elsewhere leaves it usable.
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records and broadcasts an event of `kind` (`container`, `image`, ...).
    pub fn publish<K, V>(&self, kind: &str, action: &str, actor_id: &str, attributes: impl IntoIterator<Item = (K, V)>)
    where
        K: Into<String>,
        V: Into<String>,
    {
        let time_nano = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64;
        let event = Event {
            r#type: kind.into(),
            action: action.into(),
            actor_id: actor_id.into(),
            attributes: attributes.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
            time_nano,
        };
        let mut kept = self.kept();
        let seq = kept.next;
        kept.next += 1;
        kept.events.push_back((seq, event.clone()));
        if kept.events.len() > HISTORY {
            kept.events.pop_front();
        }
        // Sent under the lock, so the order of history and broadcast agree.
        let _ = self.tx.send((seq, event));
    }

    /// The kept events from `since_nano` on (none for 0), then live ones, up
    /// to `until_nano` (0: no end; the stream ends when that time comes, or
    /// right after the history when it is past).
    pub fn subscribe(&self, since_nano: i64, until_nano: i64) -> EventStream {
        use futures::StreamExt;
        let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64;
        if until_nano <= 0 {
            return self.subscribe_open(since_nano);
        }
        // With an end, the history counts from the oldest kept event (dockerd's
        // loadBufferedEvents) unless `since` says otherwise.
        let stream = self.subscribe_open(since_nano.max(1));
        let in_range = move |e: &Event| e.time_nano <= until_nano;
        if until_nano <= now {
            // Only the history: it is all in memory, so take what is ready.
            let kept: Vec<Event> = self
                .kept()
                .events
                .iter()
                .filter(|(_, e)| e.time_nano >= since_nano && in_range(e))
                .map(|(_, e)| e.clone())
                .collect();
            return Box::pin(futures::stream::iter(kept));
        }
        let deadline = tokio::time::sleep(std::time::Duration::from_nanos((until_nano - now) as u64));
        Box::pin(stream.take_while(move |e| futures::future::ready(in_range(e))).take_until(deadline))
    }

    fn subscribe_open(&self, since_nano: i64) -> EventStream {
        let (history, rx, last) = {
            let kept = self.kept();
            let rx = self.tx.subscribe();
            let history: Vec<Event> = if since_nano > 0 {
                kept.events.iter().filter(|(_, e)| e.time_nano >= since_nano).map(|(_, e)| e.clone()).collect()
            } else {
                Vec::new()
            };
            (history, rx, kept.next)
        };
        let live = live_from(rx, last);
        Box::pin(tokio_stream::StreamExt::chain(tokio_stream::iter(history), live))
    }
}

/// Live events from `rx` with a sequence number of at least `from`; ends when
/// the bus goes away or the subscriber lags.
fn live_from(rx: broadcast::Receiver<(u64, Event)>, from: u64) -> EventStream {
    let stream = tokio_stream::wrappers::BroadcastStream::new(rx);
    let stream = tokio_stream::StreamExt::map_while(stream, move |item| match item {
        Ok((seq, event)) => Some((seq >= from).then_some(event)),
        Err(_) => {
            tracing::warn!("an events subscriber fell behind and was dropped");
            None
        }
    });
    Box::pin(tokio_stream::StreamExt::filter_map(stream, |e| e))
}

/// Where the gateway reads events from.
#[tonic::async_trait]
pub trait EventSource: Send + Sync + 'static {
    /// Events since `since_nano` (0: only new ones), then live ones, up to
    /// `until_nano` (0: no end).
    async fn events(&self, since_nano: i64, until_nano: i64) -> Result<EventStream>;
}

#[tonic::async_trait]
impl EventSource for EventBus {
    async fn events(&self, since_nano: i64, until_nano: i64) -> Result<EventStream> {
        Ok(self.subscribe(since_nano, until_nano))
    }
}

/// A bus served over gRPC.
#[derive(Debug, Clone)]
pub struct EventsGrpcServer(Arc<EventBus>);

/// The gRPC service of `bus`, for a service binary to host beside its own.
pub fn events_server(bus: Arc<EventBus>) -> EventsServiceServer<EventsGrpcServer> {
    EventsServiceServer::new(EventsGrpcServer(bus))
}

#[tonic::async_trait]
impl EventsService for EventsGrpcServer {
    type SubscribeStream = Pin<Box<dyn Stream<Item = std::result::Result<Event, tonic::Status>> + Send>>;

    async fn subscribe(
        &self,
        req: tonic::Request<pb::SubscribeRequest>,
    ) -> std::result::Result<tonic::Response<Self::SubscribeStream>, tonic::Status> {
        let r = req.into_inner();
        let events = self.0.subscribe(r.since_nano, r.until_nano);
        Ok(tonic::Response::new(Box::pin(tokio_stream::StreamExt::map(events, Ok))))
    }
}

/// A service's bus in another process.
#[derive(Debug, Clone)]
pub struct EventsGrpcClient(EventsServiceClient<Channel>);

impl EventsGrpcClient {
    /// A client on `channel`.
    pub fn new(channel: Channel) -> Self {
        EventsGrpcClient(EventsServiceClient::new(channel))
    }
}

#[tonic::async_trait]
impl EventSource for EventsGrpcClient {
    async fn events(&self, since_nano: i64, until_nano: i64) -> Result<EventStream> {
        let stream = self
            .0
            .clone()
            .subscribe(pb::SubscribeRequest { since_nano, until_nano })
            .await
            .map_err(|s| crate::grpc::status_to_error("events", s))?
            .into_inner();
        // A broken connection ends the stream, as a dropped subscriber's does.
        Ok(Box::pin(tokio_stream::StreamExt::map_while(stream, |r| r.ok())))
    }
}

/// A container's attributes for its events: its name, image and labels, as
/// dockerd sets them.
pub fn container_attributes(name: &str, image: &str, labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut a = labels.clone();
    a.insert("name".into(), name.trim_start_matches('/').into());
    a.insert("image".into(), image.into());
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_stream::StreamExt;

    #[tokio::test]
    async fn history_then_live_without_gaps_or_doubles() {
        let bus = EventBus::new();
        bus.publish("container", "create", "a", [("name", "one")]);
        let since = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 - 60_000_000_000;
        let mut all = bus.subscribe(since, 0);
        let mut live = bus.subscribe(0, 0);
        let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64;
        let past = bus.subscribe(since, now);
        let soon = bus.subscribe(since, now + 200_000_000);
        bus.publish("container", "start", "a", [("name", "one")]);
        let first = all.next().await.expect("history");
        assert_eq!((first.action.as_str(), first.attributes["name"].as_str()), ("create", "one"));
        assert_eq!(all.next().await.expect("live").action, "start");
        assert_eq!(live.next().await.expect("live").action, "start", "no history without since");
        // A past `until`: the history in range, then the end.
        let past: Vec<Event> = past.collect().await;
        assert_eq!(past.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["create"]);
        // A near one: history, live events, and the end when it comes.
        let soon: Vec<Event> = tokio::time::timeout(std::time::Duration::from_secs(5), soon.collect())
            .await
            .expect("the stream ends at until");
        assert_eq!(soon.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["create", "start"]);
    }

    #[tokio::test]
    async fn history_is_bounded_and_a_slow_subscriber_is_dropped() {
        let bus = EventBus::new();
        let mut slow = bus.subscribe(0, 0);
        for i in 0..(HISTORY + 10) {
            bus.publish("volume", "create", &i.to_string(), std::iter::empty::<(String, String)>());
        }
        assert_eq!(bus.kept().events.len(), HISTORY);
        let mut seen = 0;
        while slow.next().await.is_some() {
            seen += 1;
        }
        assert!(seen <= BACKLOG, "the stream ended instead of blocking the publisher: {seen}");
    }
}
