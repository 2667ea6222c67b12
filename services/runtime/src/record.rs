//! A container record's documents, typed. The record ([`pb::Container`]) keeps
//! Docker's `Config`, `HostConfig`, `NetworkingConfig` and `NetworkSettings` as
//! the JSON Berth wrote at create (the wire and store format); the runtime reads
//! them through these functions only, so every consumer sees the same types and
//! a damaged record is an error, never a silent default.

use berth_core::{Error, Result};
use berth_models::container::{ContainerConfig, ContainerStatus, HostConfig};
use berth_models::network::{NetworkSettings, NetworkingConfig};

use crate::pb;

fn damaged(c: &pb::Container, what: &str, e: String) -> Error {
    Error::internal(format!("container {}: stored {what}: {e}", c.id))
}

/// The container's merged `Config`.
pub fn config(c: &pb::Container) -> Result<ContainerConfig> {
    berth_models::parse_or_default("Config", &c.config).map_err(|e| damaged(c, "Config", e))
}

/// The container's `HostConfig`.
pub fn host_config(c: &pb::Container) -> Result<HostConfig> {
    berth_models::parse_or_default("HostConfig", &c.host_config).map_err(|e| damaged(c, "HostConfig", e))
}

/// The networks the container should be on.
pub fn networking(c: &pb::Container) -> Result<NetworkingConfig> {
    berth_models::parse_or_default("NetworkingConfig", &c.networking_config)
        .map_err(|e| damaged(c, "NetworkingConfig", e))
}

/// The networks it is on (empty when it does not run).
pub fn network_settings(state: &pb::ContainerState) -> NetworkSettings {
    // Written by the runtime itself; an unreadable one is as good as none.
    berth_models::parse_or_default("NetworkSettings", &state.network_settings).unwrap_or_default()
}

/// The container's status (`created` before any state was recorded).
pub fn status(c: &pb::Container) -> ContainerStatus {
    c.state.as_ref().map(|s| ContainerStatus::parse(&s.status)).unwrap_or(ContainerStatus::Created)
}

/// The attributes of a container's events: its name, image and labels.
pub fn event_attributes(c: &pb::Container) -> std::collections::BTreeMap<String, String> {
    // The labels live in the container's config (the record's own list is for
    // filters that predate it).
    let mut labels: std::collections::BTreeMap<String, String> =
        c.labels.iter().map(|kv| (kv.key.clone(), kv.value.clone())).collect();
    labels.extend(config(c).ok().and_then(|cfg| cfg.labels).unwrap_or_default());
    berth_core::events::container_attributes(&c.name, &c.image, &labels)
}

/// Publishes a container event on `bus` with the container's attributes and `extra`.
pub fn emit<const N: usize>(
    bus: &berth_core::events::EventBus,
    c: &pb::Container,
    action: &str,
    extra: [(&str, String); N],
) {
    let mut attributes = event_attributes(c);
    attributes.extend(extra.into_iter().map(|(k, v)| (k.to_string(), v)));
    bus.publish("container", action, &c.id, attributes);
}

/// Publishes `mount` (at a start) or `unmount` (at an exit) for each named
/// volume of `c`, with dockerd's attributes.
pub fn emit_volume_events(bus: &berth_core::events::EventBus, c: &pb::Container, action: &str) {
    let mounts: Vec<berth_models::container::MountPoint> = serde_json::from_slice(&c.mounts).unwrap_or_default();
    for m in mounts.iter().filter(|m| m.typ == "volume") {
        let mut attributes = vec![("container", c.id.clone()), ("driver", m.driver.clone())];
        if action == "mount" {
            attributes.push(("destination", m.destination.clone()));
            attributes.push(("propagation", m.propagation.clone()));
            attributes.push(("read/write", m.rw.to_string()));
        }
        bus.publish("volume", action, &m.name, attributes);
    }
}

/// A state with `status` and defaults elsewhere.
pub fn state(status: ContainerStatus) -> pb::ContainerState {
    pb::ContainerState { status: status.as_str().into(), ..Default::default() }
}

/// The state after a start that failed before the command ran: still created,
/// with the exit code (128 for a setup failure, 126/127 for a command that
/// cannot run) and the reason, as dockerd records it. Written in one place.
pub fn failed_start(exit_code: i64, error: &str) -> pb::ContainerState {
    pb::ContainerState { exit_code, error: error.to_string(), ..state(ContainerStatus::Created) }
}
