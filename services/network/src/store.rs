//! Persistence of networks and endpoints.

use async_trait::async_trait;
use berth_core::{Error, Result};
use sqlx::{AnyPool, Row};

use crate::pb;

/// The network service's schema: `migrations/network/` for SQLite and
/// `migrations/network/postgres/` for Postgres (the same tables; a migration is
/// written once for each).
pub static MIGRATIONS: berth_core::db::Migrations = berth_core::db::Migrations {
    sqlite: &sqlx::migrate!("../../migrations/network"),
    postgres: &sqlx::migrate!("../../migrations/network/postgres"),
};

/// A container's endpoint on a network, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointRecord {
    /// The network's ID.
    pub network_id: String,
    /// The container's ID.
    pub container_id: String,
    /// The endpoint's ID (64 hex characters).
    pub endpoint_id: String,
    /// The container's address.
    pub ip: String,
    /// Its MAC address.
    pub mac: String,
    /// The host end of its veth pair.
    pub host_veth: String,
    /// The container's name (kept up to date on rename).
    pub container_name: String,
    /// Its other names on this network (`--network-alias`).
    pub aliases: Vec<String>,
    /// Its IPv6 address, on a network with IPv6 (else empty).
    pub ip6: String,
}

/// A container whose embedded DNS runs, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverRecord {
    /// The container.
    pub container_id: String,
    /// Its init when the resolver started.
    pub pid: i64,
    /// The identity of its network namespace, `dev:inode`.
    pub netns: String,
    /// Its `--dns` servers (empty: the host's).
    pub upstreams: Vec<String>,
}

/// Persistence of network records and endpoints.
///
/// Schema (`migrations/network/`): `networks(id PK, name UNIQUE, driver,
/// internal, labels JSON, created_at, subnet, gateway, options JSON, ip_range, subnet6, gateway6)` and
/// `endpoints(network_id, container_id, endpoint_id, ip, mac, host_veth, container_name, aliases JSON, ip6)`
/// with one endpoint per container and network, and unique addresses per network;
/// `ports` (published ports) and `resolvers` (containers whose embedded DNS runs).
#[async_trait]
pub trait NetworkStore: Send + Sync + 'static {
    /// Every network record, by name.
    async fn networks(&self) -> Result<Vec<pb::Network>>;
    /// Records a network; a taken name is `AlreadyExists`.
    async fn insert_network(&self, n: &pb::Network) -> Result<()>;
    /// Forgets a network (its endpoints must be gone).
    async fn delete_network(&self, id: &str) -> Result<()>;
    /// The endpoints on a network.
    async fn endpoints(&self, network_id: &str) -> Result<Vec<EndpointRecord>>;
    /// A container's endpoints.
    async fn container_endpoints(&self, container_id: &str) -> Result<Vec<EndpointRecord>>;
    /// Records an endpoint; a taken address is `AlreadyExists`.
    async fn insert_endpoint(&self, e: &EndpointRecord) -> Result<()>;
    /// Forgets an endpoint.
    async fn delete_endpoint(&self, network_id: &str, container_id: &str) -> Result<()>;
    /// Every endpoint on every network.
    async fn all_endpoints(&self) -> Result<Vec<EndpointRecord>>;
    /// A container's new name on all its endpoints.
    async fn rename_container(&self, container_id: &str, name: &str) -> Result<()>;
    /// The containers whose resolver runs.
    async fn resolvers(&self) -> Result<Vec<ResolverRecord>>;
    /// Records (or replaces) a container's resolver.
    async fn put_resolver(&self, r: &ResolverRecord) -> Result<()>;
    /// Forgets a container's resolver.
    async fn delete_resolver(&self, container_id: &str) -> Result<()>;
    /// Every published port.
    async fn ports(&self) -> Result<Vec<PortRecord>>;
    /// Records published ports, all or none; a taken host port is `AlreadyExists`.
    async fn insert_ports(&self, ports: &[PortRecord]) -> Result<()>;
    /// Withdraws a container's published ports (on one network, or all).
    async fn delete_ports(&self, container_id: &str, network_id: Option<&str>) -> Result<()>;
}

/// A published port, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRecord {
    /// The container.
    pub container_id: String,
    /// The network the container's address is on.
    pub network_id: String,
    /// tcp or udp.
    pub proto: String,
    /// The host address (0.0.0.0: every address).
    pub host_ip: String,
    /// The host port.
    pub host_port: u16,
    /// The container's address.
    pub container_ip: String,
    /// The container's port.
    pub container_port: u16,
}

/// [`NetworkStore`] in SQL: the same statements on SQLite and on Postgres.
#[derive(Debug, Clone)]
pub struct SqlNetworkStore {
    pool: AnyPool,
}

impl SqlNetworkStore {
    /// Wraps an open pool whose migrations have run.
    pub fn new(pool: AnyPool) -> Self {
        Self { pool }
    }
}

use berth_proto::types::v1::kv::{from_text as pairs, to_text as json_of};

fn unique(e: sqlx::Error, what: &str) -> Error {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => Error::already_exists(what.to_string()),
        _ => Error::from(e),
    }
}

fn endpoint_of(r: &sqlx::any::AnyRow) -> Result<EndpointRecord> {
    Ok(EndpointRecord {
        network_id: r.try_get("network_id")?,
        container_id: r.try_get("container_id")?,
        endpoint_id: r.try_get("endpoint_id")?,
        ip: r.try_get("ip")?,
        mac: r.try_get("mac")?,
        host_veth: r.try_get("host_veth")?,
        container_name: r.try_get("container_name")?,
        aliases: serde_json::from_str(&r.try_get::<String, _>("aliases")?).unwrap_or_default(),
        ip6: r.try_get("ip6")?,
    })
}

const ENDPOINT_COLUMNS: &str =
    "network_id, container_id, endpoint_id, ip, mac, host_veth, container_name, aliases, ip6";

#[async_trait]
impl NetworkStore for SqlNetworkStore {
    async fn networks(&self) -> Result<Vec<pb::Network>> {
        let rows = sqlx::query(
            "SELECT id, name, driver, internal, labels, created_at, subnet, gateway, options, ip_range, subnet6, \
             gateway6 FROM networks ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(pb::Network {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    driver: r.try_get("driver")?,
                    scope: "local".into(),
                    created: r.try_get("created_at")?,
                    internal: r.try_get::<i64, _>("internal")? != 0,
                    labels: pairs(&r.try_get::<String, _>("labels")?),
                    subnet: r.try_get("subnet")?,
                    gateway: r.try_get("gateway")?,
                    options: pairs(&r.try_get::<String, _>("options")?),
                    ip_range: r.try_get("ip_range")?,
                    endpoints: vec![],
                    subnet6: r.try_get("subnet6")?,
                    gateway6: r.try_get("gateway6")?,
                })
            })
            .collect()
    }

    async fn insert_network(&self, n: &pb::Network) -> Result<()> {
        sqlx::query(
            "INSERT INTO networks (id, name, driver, internal, labels, created_at, subnet, gateway, options, ip_range, \
             subnet6, gateway6) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&n.id)
        .bind(&n.name)
        .bind(&n.driver)
        .bind(n.internal as i64)
        .bind(json_of(&n.labels))
        .bind(&n.created)
        .bind(&n.subnet)
        .bind(&n.gateway)
        .bind(json_of(&n.options))
        .bind(&n.ip_range)
        .bind(&n.subnet6)
        .bind(&n.gateway6)
        .execute(&self.pool)
        .await
        .map_err(|e| unique(e, &format!("network with name {} already exists", n.name)))?;
        Ok(())
    }

    async fn delete_network(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM networks WHERE id = $1").bind(id).execute(&self.pool).await?;
        Ok(())
    }

    async fn endpoints(&self, network_id: &str) -> Result<Vec<EndpointRecord>> {
        let q = format!("SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE network_id = $1");
        let rows = sqlx::query(&q).bind(network_id).fetch_all(&self.pool).await?;
        rows.iter().map(endpoint_of).collect()
    }

    async fn container_endpoints(&self, container_id: &str) -> Result<Vec<EndpointRecord>> {
        let q = format!("SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE container_id = $1");
        let rows = sqlx::query(&q).bind(container_id).fetch_all(&self.pool).await?;
        rows.iter().map(endpoint_of).collect()
    }

    async fn insert_endpoint(&self, e: &EndpointRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO endpoints (network_id, container_id, endpoint_id, ip, mac, host_veth, created_at, \
             container_name, aliases, ip6) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&e.network_id)
        .bind(&e.container_id)
        .bind(&e.endpoint_id)
        .bind(&e.ip)
        .bind(&e.mac)
        .bind(&e.host_veth)
        .bind(berth_core::id::now_rfc3339())
        .bind(&e.container_name)
        .bind(serde_json::to_string(&e.aliases).unwrap_or_else(|_| "[]".into()))
        .bind(&e.ip6)
        .execute(&self.pool)
        .await
        .map_err(|err| unique(err, &format!("Address already in use: {}", e.ip)))?;
        Ok(())
    }

    async fn ports(&self) -> Result<Vec<PortRecord>> {
        let rows = sqlx::query(
            "SELECT container_id, network_id, proto, host_ip, host_port, container_ip, container_port FROM ports \
             ORDER BY host_port",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PortRecord {
                    container_id: r.try_get("container_id")?,
                    network_id: r.try_get("network_id")?,
                    proto: r.try_get("proto")?,
                    host_ip: r.try_get("host_ip")?,
                    host_port: r.try_get::<i64, _>("host_port")? as u16,
                    container_ip: r.try_get("container_ip")?,
                    container_port: r.try_get::<i64, _>("container_port")? as u16,
                })
            })
            .collect()
    }

    async fn insert_ports(&self, ports: &[PortRecord]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for p in ports {
            sqlx::query(
                "INSERT INTO ports (container_id, network_id, proto, host_ip, host_port, container_ip, container_port) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&p.container_id)
            .bind(&p.network_id)
            .bind(&p.proto)
            .bind(&p.host_ip)
            .bind(i64::from(p.host_port))
            .bind(&p.container_ip)
            .bind(i64::from(p.container_port))
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                unique(e, &format!("Bind for {}:{} failed: port is already allocated", p.host_ip, p.host_port))
            })?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn delete_ports(&self, container_id: &str, network_id: Option<&str>) -> Result<()> {
        match network_id {
            Some(n) => {
                sqlx::query("DELETE FROM ports WHERE container_id = $1 AND network_id = $2")
                    .bind(container_id)
                    .bind(n)
                    .execute(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("DELETE FROM ports WHERE container_id = $1").bind(container_id).execute(&self.pool).await?
            }
        };
        Ok(())
    }

    async fn all_endpoints(&self) -> Result<Vec<EndpointRecord>> {
        let q = format!("SELECT {ENDPOINT_COLUMNS} FROM endpoints");
        let rows = sqlx::query(&q).fetch_all(&self.pool).await?;
        rows.iter().map(endpoint_of).collect()
    }

    async fn rename_container(&self, container_id: &str, name: &str) -> Result<()> {
        sqlx::query("UPDATE endpoints SET container_name = $1 WHERE container_id = $2")
            .bind(name)
            .bind(container_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn resolvers(&self) -> Result<Vec<ResolverRecord>> {
        let rows =
            sqlx::query("SELECT container_id, pid, netns, upstreams FROM resolvers").fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(ResolverRecord {
                    container_id: r.try_get("container_id")?,
                    pid: r.try_get("pid")?,
                    netns: r.try_get("netns")?,
                    upstreams: serde_json::from_str(&r.try_get::<String, _>("upstreams")?).unwrap_or_default(),
                })
            })
            .collect()
    }

    async fn put_resolver(&self, r: &ResolverRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO resolvers (container_id, pid, netns, upstreams) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (container_id) DO UPDATE SET pid = excluded.pid, netns = excluded.netns, \
             upstreams = excluded.upstreams",
        )
        .bind(&r.container_id)
        .bind(r.pid)
        .bind(&r.netns)
        .bind(serde_json::to_string(&r.upstreams).unwrap_or_else(|_| "[]".into()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_resolver(&self, container_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM resolvers WHERE container_id = $1").bind(container_id).execute(&self.pool).await?;
        Ok(())
    }

    async fn delete_endpoint(&self, network_id: &str, container_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM endpoints WHERE network_id = $1 AND container_id = $2")
            .bind(network_id)
            .bind(container_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
