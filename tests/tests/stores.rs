//! The stores' conformance tests: every service's store, the same statements,
//! on the embedded SQLite file and on Postgres (a database of its own on the
//! test process's server). Each test runs once per back end.

use berth_core::ErrorKind;
use berth_core::db::{AnyPool, Migrations, State};
use berth_image::store::{ImageRecord, ImageStore, LayerRecord, SqlImageStore};
use berth_network::store::{EndpointRecord, NetworkStore, PortRecord, ResolverRecord, SqlNetworkStore};
use berth_proto::types::v1::KeyValue;
use berth_runtime::store::{CachedContainerStore, ContainerStore, SqlContainerStore};
use berth_tests::postgres::Postgres;
use berth_volume::store::{SqlVolumeStore, VolumeStore};

/// A store's database on each back end: (name, pool, what keeps it alive).
async fn backends(service: &str, migrations: &Migrations) -> Vec<(&'static str, AnyPool, tempfile::TempDir)> {
    let dir = tempfile::tempdir().expect("tmp");
    let sqlite = State::Embedded.open(service, dir.path(), migrations).await.expect("sqlite");
    let url = Postgres::shared().create_database().expect("database");
    let pg_dir = tempfile::tempdir().expect("tmp");
    let postgres = State::parse(Some(&url)).expect("url").open(service, pg_dir.path(), migrations).await.expect("pg");
    assert!(
        std::fs::read_dir(pg_dir.path()).expect("dir").next().is_none(),
        "on Postgres no file is made under the service's directory"
    );
    vec![("sqlite", sqlite, dir), ("postgres", postgres, pg_dir)]
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue { key: k.into(), value: v.into() }
}

fn layer(n: u8, parent: Option<&str>) -> LayerRecord {
    LayerRecord {
        chain_id: format!("sha256:{}", format!("{n:02x}").repeat(32)),
        diff_id: format!("sha256:{}", format!("{n:02x}").repeat(32)),
        parent: parent.map(str::to_string),
        size: 10 * n as i64,
    }
}

fn image(id: u8, layers: Vec<LayerRecord>) -> ImageRecord {
    ImageRecord {
        id: format!("sha256:{}", format!("{id:02x}").repeat(32)),
        // Not UTF-8 on purpose: the config is kept byte for byte.
        config: vec![b'{', 0xff, 0x00, b'}'],
        created: format!("2024-01-0{id}T00:00:00Z"),
        size: layers.iter().map(|l| l.size).sum(),
        parent: String::new(),
        last_tag_time: String::new(),
        tags: vec![],
        digests: vec![],
        layers,
    }
}

#[tokio::test]
async fn image_store_shares_layers_and_moves_tags() {
    for (backend, pool, _keep) in backends("image", &berth_image::store::MIGRATIONS).await {
        let s = SqlImageStore::new(pool);
        let base = layer(1, None);
        let a = image(1, vec![base.clone()]);
        let b = image(2, vec![base.clone(), layer(2, Some(&base.chain_id))]);
        s.commit_image(&a, &["a:latest".into(), "app:v1".into()], "t1").await.expect("a");
        // b shares the base layer (ON CONFLICT DO NOTHING) and takes app:v1 (ON CONFLICT DO UPDATE).
        s.commit_image(&b, &["b:latest".into(), "app:v1".into()], "t2").await.expect("b");
        s.commit_image(&b, &[], "t3").await.expect("b again is a no-op");
        assert_eq!(s.layers().await.expect("layers").len(), 2, "{backend}");
        assert_eq!(s.resolve_ref("app:v1").await.expect("resolve"), Some(b.id.clone()), "{backend}");
        let got = s.image(&b.id).await.expect("get").expect("exists");
        assert_eq!(got.config, b.config, "{backend}: config bytes");
        assert_eq!(got.tags, vec!["app:v1".to_string(), "b:latest".to_string()], "{backend}");
        assert_eq!(got.layers, b.layers, "{backend}: layers in order");
        assert_eq!(s.image(&a.id).await.expect("get").expect("exists").tags, vec!["a:latest".to_string()]);
        assert_eq!(s.ids_with_prefix("sha256:0202").await.expect("prefix"), vec![b.id.clone()], "{backend}");
        assert_eq!(s.ids_with_prefix("sha256:0").await.expect("prefix").len(), 2, "{backend}");
        s.tag("b:old", &b.id, "t4").await.expect("tag");
        assert!(s.untag("b:old").await.expect("untag"), "{backend}");
        assert!(!s.untag("b:old").await.expect("untag again"), "{backend}");
        let gone = s.delete_image(&b.id).await.expect("delete b");
        assert_eq!(gone, vec![layer(2, Some(&base.chain_id))], "{backend}: only b's own layer goes");
        assert!(s.has_layer(&base.chain_id).await.expect("has"), "{backend}");
        assert_eq!(s.resolve_ref("b:latest").await.expect("resolve"), None, "{backend}: refs cascade");
        assert_eq!(s.delete_image(&a.id).await.expect("delete a"), vec![base], "{backend}");
        assert!(s.images().await.expect("images").is_empty(), "{backend}");
    }
}

fn container(id: &str, name: &str, created: &str) -> berth_runtime::pb::Container {
    berth_runtime::pb::Container {
        id: id.into(),
        name: name.into(),
        created: created.into(),
        config: br#"{"Labels":{"a":"b"}}"#.to_vec(),
        host_config: br#"{"NetworkMode":"default"}"#.to_vec(),
        args: vec!["-c".into(), "echo \"quoted\"".into()],
        state: Some(berth_runtime::pb::ContainerState { status: "created".into(), ..Default::default() }),
        ..Default::default()
    }
}

#[tokio::test]
async fn container_store_and_its_cache_agree() {
    for (backend, pool, _keep) in backends("runtime", &berth_runtime::store::MIGRATIONS).await {
        let cached = CachedContainerStore::new(SqlContainerStore::new(pool.clone()));
        cached.insert(&container("aa", "one", "2020-01-01T00:00:00Z")).await.expect("insert");
        cached.insert(&container("bb", "two", "2021-01-01T00:00:00Z")).await.expect("insert");
        assert_eq!(
            cached.insert(&container("cc", "two", "2022-01-01T00:00:00Z")).await.err().map(|e| e.kind()),
            Some(ErrorKind::AlreadyExists),
            "{backend}: a taken name; the failed write leaves the cache alone"
        );
        assert_eq!(cached.rename("bb", "one").await.err().map(|e| e.kind()), Some(ErrorKind::AlreadyExists));
        cached.rename("aa", "uno").await.expect("rename");
        let started = berth_runtime::pb::ContainerState {
            status: "running".into(),
            pid: 7,
            started_at: "2023-01-01T00:00:00Z".into(),
            network_settings: vec![1, 2, 0, 3],
            ..Default::default()
        };
        cached.set_state("aa", &started).await.expect("state");
        let exited = berth_runtime::pb::ContainerState { status: "exited".into(), exit_code: 3, ..Default::default() };
        cached.set_state("aa", &exited).await.expect("state");
        cached.set_health("aa", br#"{"Status":"healthy"}"#).await.expect("health");
        cached.set_restart("aa", 4, true).await.expect("restart");
        cached.set_host_config("aa", br#"{"Memory":1}"#).await.expect("host config");
        cached.set_networking("aa", b"{}").await.expect("networking");
        assert!(cached.delete("bb").await.expect("delete"), "{backend}");
        assert!(!cached.delete("bb").await.expect("delete again"), "{backend}");
        let fresh = SqlContainerStore::new(pool).containers().await.expect("db");
        let mem = cached.containers().await.expect("cache");
        assert_eq!(mem, fresh, "{backend}: the cache is what the database holds");
        assert_eq!(mem.len(), 1);
        let c = &mem[0];
        assert_eq!((c.name.as_str(), c.restart_count, c.manually_stopped), ("uno", 4, true), "{backend}");
        assert_eq!(c.args, vec!["-c".to_string(), "echo \"quoted\"".to_string()], "{backend}");
        assert_eq!(c.host_config, br#"{"Memory":1}"#.to_vec(), "{backend}");
        assert_eq!(c.labels, vec![kv("a", "b")], "{backend}");
        let state = c.state.clone().unwrap_or_default();
        assert_eq!(
            (state.exit_code, state.started_at.as_str(), state.health.as_slice()),
            (3, "2023-01-01T00:00:00Z", br#"{"Status":"healthy"}"#.as_slice()),
            "{backend}: an empty time keeps the old one"
        );
    }
}

#[tokio::test]
async fn volume_store_counts_references_once() {
    for (backend, pool, _keep) in backends("volume", &berth_volume::store::MIGRATIONS).await {
        let s = SqlVolumeStore::new(pool);
        let v = berth_volume::pb::Volume {
            name: "data".into(),
            driver: "local".into(),
            mountpoint: "/x/data/_data".into(),
            labels: vec![kv("app", "web"), kv("tier", "db")],
            options: vec![kv("type", "tmpfs")],
            created_at: "2024-01-01T00:00:00Z".into(),
            ..Default::default()
        };
        s.insert(&v).await.expect("insert");
        assert_eq!(s.insert(&v).await.err().map(|e| e.kind()), Some(ErrorKind::AlreadyExists), "{backend}");
        s.add_ref("data", "c1").await.expect("ref");
        s.add_ref("data", "c1").await.expect("the same ref again is not an error");
        s.add_ref("data", "c2").await.expect("ref");
        assert_eq!(s.refs().await.expect("refs").len(), 2, "{backend}");
        assert_eq!(s.drop_refs("c1").await.expect("drop"), vec!["data".to_string()], "{backend}");
        let got = s.volumes().await.expect("volumes");
        assert_eq!(got.len(), 1);
        assert_eq!((&got[0].labels, &got[0].options), (&v.labels, &v.options), "{backend}");
        s.delete("data").await.expect("delete");
        assert!(s.volumes().await.expect("volumes").is_empty() && s.refs().await.expect("refs").is_empty());
    }
}

fn endpoint(net: &str, container: &str, ip: &str) -> EndpointRecord {
    EndpointRecord {
        network_id: net.into(),
        container_id: container.into(),
        endpoint_id: format!("{container}{ip}"),
        ip: ip.into(),
        mac: "02:42:ac:11:00:02".into(),
        host_veth: format!("veth{container}"),
        container_name: format!("name-{container}"),
        aliases: vec!["web".into()],
        ip6: String::new(),
    }
}

fn port(container: &str, host_port: u16) -> PortRecord {
    PortRecord {
        container_id: container.into(),
        network_id: "n1".into(),
        proto: "tcp".into(),
        host_ip: "0.0.0.0".into(),
        host_port,
        container_ip: "10.0.0.2".into(),
        container_port: 80,
    }
}

#[tokio::test]
async fn network_store_hands_out_addresses_and_ports_once() {
    for (backend, pool, _keep) in backends("network", &berth_network::store::MIGRATIONS).await {
        let s = SqlNetworkStore::new(pool);
        let n = berth_network::pb::Network {
            id: "n1".into(),
            name: "front".into(),
            driver: "bridge".into(),
            internal: true,
            labels: vec![kv("a", "b")],
            subnet: "10.0.0.0/24".into(),
            gateway: "10.0.0.1".into(),
            subnet6: "fd00::/64".into(),
            created: "2024-01-01T00:00:00Z".into(),
            ..Default::default()
        };
        s.insert_network(&n).await.expect("network");
        let again = berth_network::pb::Network { id: "n2".into(), ..n.clone() };
        assert_eq!(s.insert_network(&again).await.err().map(|e| e.kind()), Some(ErrorKind::AlreadyExists));
        s.insert_endpoint(&endpoint("n1", "c1", "10.0.0.2")).await.expect("endpoint");
        assert_eq!(
            s.insert_endpoint(&endpoint("n1", "c2", "10.0.0.2")).await.err().map(|e| e.kind()),
            Some(ErrorKind::AlreadyExists),
            "{backend}: an address is handed out once"
        );
        s.rename_container("c1", "renamed").await.expect("rename");
        let eps = s.container_endpoints("c1").await.expect("endpoints");
        assert_eq!(eps.len(), 1);
        assert_eq!((eps[0].container_name.as_str(), eps[0].aliases.clone()), ("renamed", vec!["web".to_string()]));
        s.insert_ports(&[port("c1", 8080), port("c1", 8081)]).await.expect("ports");
        assert_eq!(
            s.insert_ports(&[port("c2", 9090), port("c2", 8080)]).await.err().map(|e| e.kind()),
            Some(ErrorKind::AlreadyExists),
            "{backend}: a taken port"
        );
        assert_eq!(s.ports().await.expect("ports").len(), 2, "{backend}: all or none of c2's went in");
        let r = ResolverRecord { container_id: "c1".into(), pid: 10, netns: "4:1".into(), upstreams: vec![] };
        s.put_resolver(&r).await.expect("resolver");
        let r2 = ResolverRecord { pid: 11, netns: "4:2".into(), upstreams: vec!["9.9.9.9".into()], ..r.clone() };
        s.put_resolver(&r2).await.expect("resolver replaced");
        assert_eq!(s.resolvers().await.expect("resolvers"), vec![r2], "{backend}");
        s.delete_ports("c1", Some("n1")).await.expect("ports");
        s.delete_endpoint("n1", "c1").await.expect("endpoint");
        s.delete_resolver("c1").await.expect("resolver");
        s.delete_network("n1").await.expect("network");
        let nets = s.networks().await.expect("networks");
        assert!(nets.is_empty() && s.all_endpoints().await.expect("all").is_empty(), "{backend}");
    }
}

#[tokio::test]
async fn each_service_keeps_its_own_schema() {
    let pg = Postgres::shared();
    let url = pg.create_database().expect("database");
    let state = State::parse(Some(&url)).expect("url");
    let dir = tempfile::tempdir().expect("tmp");
    state.open("volume", dir.path(), &berth_volume::store::MIGRATIONS).await.expect("volume");
    state.open("runtime", dir.path(), &berth_runtime::store::MIGRATIONS).await.expect("runtime");
    // Opening again finds the migrations applied.
    state.open("volume", dir.path(), &berth_volume::store::MIGRATIONS).await.expect("volume again");
    let db = url.rsplit('/').next().expect("db name");
    let tables = pg
        .psql(db, "SELECT table_schema || '.' || table_name FROM information_schema.tables WHERE table_schema LIKE 'berth_%' ORDER BY 1")
        .expect("psql");
    let tables: Vec<&str> = tables.lines().collect();
    assert!(tables.contains(&"berth_volume.volumes") && tables.contains(&"berth_runtime.containers"), "{tables:?}");
    assert!(tables.contains(&"berth_volume._sqlx_migrations"), "migrations are per schema: {tables:?}");
    assert!(!tables.iter().any(|t| t.starts_with("berth_volume.containers")), "{tables:?}");
}
