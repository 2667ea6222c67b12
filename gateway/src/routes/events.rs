//! `GET /events`: Docker's event stream, merged from the services' buses,
//! filtered as dockerd filters (`events/filter.go`), one JSON object per event.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, Uri, header};
use axum::response::Response;
use axum::routing::get;
use berth_core::Error;
use berth_core::events::Event;
use berth_runtime_api::Filter;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiResult;
use crate::params::Params;

pub fn router() -> Router<AppState> {
    Router::new().route("/events", get(get_events))
}

const FILTER_KEYS: [&str; 14] = [
    "config",
    "container",
    "daemon",
    "event",
    "image",
    "label",
    "network",
    "node",
    "plugin",
    "scope",
    "secret",
    "service",
    "type",
    "volume",
];

/// `since`/`until` as dockerd's `timetypes.GetTimestamp` reads them (Unix
/// seconds with a fraction, RFC 3339, or a duration before now), in Unix
/// nanoseconds; the one parser of filter times, `berth_core::id::parse_until`.
pub(crate) fn parse_time(value: &str, now_nano: i64) -> Result<i64, Error> {
    let bad = || Error::invalid(format!("failed to parse value as time or duration: \"{value}\""));
    let now = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(now_nano)).map_err(|_| bad())?;
    let t = berth_core::id::parse_until(value.trim(), now).map_err(|_| bad())?;
    i64::try_from(t.unix_timestamp_nanos()).map_err(|_| bad())
}

/// The filters of one request, by key.
struct EventFilter(HashMap<String, Vec<String>>);

impl EventFilter {
    fn new(filters: Vec<Filter>) -> Result<Self, Error> {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        for f in filters {
            if !FILTER_KEYS.contains(&f.key.as_str()) {
                return Err(Error::invalid(format!("invalid filter '{}'", f.key)));
            }
            map.entry(f.key).or_default().extend(f.values);
        }
        Ok(EventFilter(map))
    }

    /// True when `key` is not filtered, or one of its values is `value`.
    fn exact(&self, key: &str, value: &str) -> bool {
        self.0.get(key).is_none_or(|vs| vs.iter().any(|v| v == value))
    }

    /// True when `key` is not filtered, or `value` starts with one of its values.
    fn fuzzy(&self, key: &str, value: &str) -> bool {
        self.0.get(key).is_none_or(|vs| vs.iter().any(|v| value.starts_with(v.as_str())))
    }

    /// The actor's ID or name, for `container`, `network`, `volume`, `daemon`.
    fn name(&self, key: &str, e: &Event) -> bool {
        let name = e.attributes.get("name").map(String::as_str).unwrap_or("");
        self.fuzzy(key, &e.actor_id) || (self.0.contains_key(key) && !name.is_empty() && self.fuzzy(key, name))
    }

    fn includes(&self, e: &Event) -> bool {
        let action_head = e.action.split(':').next().unwrap_or("");
        let strip_tag = |s: &str| -> String {
            match s.rsplit_once(':') {
                Some((name, tag)) if !tag.contains('/') && !name.is_empty() => name.to_string(),
                _ => s.to_string(),
            }
        };
        let image_name =
            e.attributes.get(if e.r#type == "image" { "name" } else { "image" }).cloned().unwrap_or_default();
        let image = self.exact("image", &e.actor_id)
            || self.exact("image", &image_name)
            || self.exact("image", &strip_tag(&e.actor_id))
            || self.exact("image", &strip_tag(&image_name));
        let labels = self.0.get("label").is_none_or(|ls| {
            ls.iter().all(|l| match l.split_once('=') {
                Some((k, v)) => e.attributes.get(k).is_some_and(|a| a == v),
                None => e.attributes.contains_key(l),
            })
        });
        self.exact("scope", "local")
            && self.exact("type", &e.r#type)
            && (self.exact("event", &e.action) || self.exact("event", action_head))
            && self.name("container", e)
            && self.name("network", e)
            && self.name("volume", e)
            && self.name("daemon", e)
            && ["plugin", "node", "service", "secret", "config"].iter().all(|k| self.name(k, e))
            && image
            && labels
    }
}

/// An event as dockerd writes it, with the pre-1.22 `status`, `id` and `from`
/// of container and image events that older clients read.
fn to_json(e: &Event) -> Value {
    let mut v = json!({
        "Type": e.r#type,
        "Action": e.action,
        "Actor": {"ID": e.actor_id, "Attributes": e.attributes},
        "scope": "local",
        "time": e.time_nano / 1_000_000_000,
        "timeNano": e.time_nano,
    });
    if e.r#type == "container" || e.r#type == "image" {
        v["status"] = json!(e.action);
        v["id"] = json!(e.actor_id);
    }
    if e.r#type == "container"
        && let Some(image) = e.attributes.get("image")
    {
        v["from"] = json!(image);
    }
    v
}

/// SystemEvents: `GET /events?since=&until=&filters=`. The headers go out at
/// once; then one JSON object per event, the kept ones from `since` first,
/// until `until` (when it is past: after the history) or the client leaves.
async fn get_events(State(s): State<AppState>, uri: Uri) -> ApiResult<Response> {
    let p = Params::parse(uri.query());
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64;
    let since = p.get("since").filter(|v| !v.is_empty()).map(|v| parse_time(v, now)).transpose()?.unwrap_or(0);
    let until = p.get("until").filter(|v| !v.is_empty()).map(|v| parse_time(v, now)).transpose()?.unwrap_or(0);
    let filter = EventFilter::new(p.filters()?)?;
    let mut streams = Vec::new();
    for source in &s.events {
        streams.push(source.events(since, until).await?);
    }
    let shutdown = s.shutdown.clone();
    let merged = futures::stream::select_all(streams)
        .take_until(async move { shutdown.cancelled().await })
        .filter(move |e| futures::future::ready(filter.includes(e)))
        .map(|e| Ok::<_, std::convert::Infallible>(Bytes::from(format!("{}\n", to_json(&e)))));
    let mut resp = Response::new(axum::body::Body::from_stream(merged));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, action: &str, id: &str, attrs: &[(&str, &str)]) -> Event {
        Event {
            r#type: kind.into(),
            action: action.into(),
            actor_id: id.into(),
            attributes: attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            time_nano: 1_700_000_000_123_456_789,
        }
    }

    fn filter(pairs: &[(&str, &[&str])]) -> EventFilter {
        EventFilter::new(
            pairs
                .iter()
                .map(|(k, vs)| Filter { key: k.to_string(), values: vs.iter().map(|v| v.to_string()).collect() })
                .collect(),
        )
        .expect("filter")
    }

    #[test]
    fn times_as_dockerd_reads_them() {
        let now = 1_700_000_000_000_000_000;
        assert_eq!(parse_time("1700000000", now).ok(), Some(1_700_000_000_000_000_000));
        assert_eq!(parse_time("1700000000.5", now).ok(), Some(1_700_000_000_500_000_000));
        assert_eq!(parse_time("1700000000.000000001", now).ok(), Some(1_700_000_000_000_000_001));
        assert_eq!(parse_time("10m", now).ok(), Some(now - 600_000_000_000));
        assert_eq!(parse_time("1h30m", now).ok(), Some(now - 5_400_000_000_000));
        assert_eq!(parse_time("2023-11-14T22:13:20Z", now).ok(), Some(1_700_000_000_000_000_000));
        for bad in ["", "x", "10y", "99999999999999999999", "1.2.3"] {
            assert!(parse_time(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_as_dockerd_applies_them() {
        let start =
            event("container", "start", "abc123", &[("name", "web"), ("image", "busybox:latest"), ("team", "a")]);
        let exec = event("container", "exec_create: sh -c true", "abc123", &[("name", "web")]);
        let net = event("network", "connect", "n1", &[("name", "front"), ("container", "abc123")]);
        assert!(filter(&[]).includes(&start));
        assert!(filter(&[("type", &["container"])]).includes(&start));
        assert!(!filter(&[("type", &["container"])]).includes(&net));
        assert!(filter(&[("container", &["web"])]).includes(&start));
        assert!(filter(&[("container", &["abc"])]).includes(&start), "an ID prefix");
        assert!(!filter(&[("container", &["other"])]).includes(&start));
        assert!(filter(&[("event", &["exec_create"])]).includes(&exec), "the action's head");
        assert!(filter(&[("event", &["start", "stop"])]).includes(&start));
        assert!(!filter(&[("event", &["stop"])]).includes(&start));
        assert!(filter(&[("label", &["team=a"])]).includes(&start));
        assert!(filter(&[("label", &["team"])]).includes(&start));
        assert!(!filter(&[("label", &["team=b"])]).includes(&start));
        assert!(filter(&[("image", &["busybox"])]).includes(&start), "the image without its tag");
        assert!(filter(&[("network", &["front"])]).includes(&net));
        assert!(EventFilter::new(vec![Filter { key: "bogus".into(), values: vec![] }]).is_err());
    }

    #[test]
    fn events_are_written_as_dockerd_writes_them() {
        let v = to_json(&event("container", "die", "abc", &[("exitCode", "0"), ("image", "busybox")]));
        assert_eq!(v["status"], "die");
        assert_eq!(v["id"], "abc");
        assert_eq!(v["from"], "busybox");
        assert_eq!(v["Actor"]["Attributes"]["exitCode"], "0");
        assert_eq!(v["time"], 1_700_000_000);
        assert_eq!(v["timeNano"], 1_700_000_000_123_456_789_i64);
        let n = to_json(&event("network", "create", "n1", &[]));
        assert!(n.get("status").is_none() && n.get("from").is_none());
    }
}
