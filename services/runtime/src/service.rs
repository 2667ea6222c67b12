//! [`LocalRuntime`]: the runtime service over a [`ContainerStore`], asking the
//! image service for images.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use berth_core::{Error, ErrorKind, Result};
use berth_image_api::ImageApi;
use berth_models::container::{ContainerStatus, CreateBody, HostConfig, LogConfig};
use berth_models::image::ImageConfig;
use berth_models::network::NetworkingConfig;
use berth_proto::types::v1::Filter;

use crate::create::{command_line, generate_name, merge_config, validate_host_config, validate_name};
pub(crate) use crate::record::status;
use crate::store::{CachedContainerStore, ContainerStore, MIGRATIONS, SqlContainerStore};
use crate::{RuntimeApi, pb};

/// Daemon-wide settings of the runtime service.
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfig {
    /// Default log options (`log-opts`), for containers that set none.
    pub log_opts: std::collections::BTreeMap<String, String>,
    /// `no-new-privileges` for containers whose `--security-opt` does not say.
    pub no_new_privileges: bool,
    /// Where container events go (`berthd` shares one bus between services).
    pub events: Arc<berth_core::events::EventBus>,
    /// The OCI runtimes installed besides Berth's own.
    pub runtimes: crate::runtimes::Runtimes,
    /// `--userns-remap`: containers' users are these host IDs.
    pub userns: Option<crate::userns::Remap>,
}

/// The runtime service. Cloning shares everything (the clones are the same
/// service, for tasks such as health monitors).
#[derive(Clone)]
pub struct LocalRuntime {
    pub(crate) store: Arc<dyn ContainerStore>,
    pub(crate) images: Arc<dyn ImageApi>,
    pub(crate) host: crate::lifecycle::Host,
    pub(crate) execs: crate::stdio::Execs,
    pub(crate) config: RuntimeConfig,
    /// Plugs containers into networks; without it every container gets only
    /// an isolated namespace (as with `--network none`).
    pub(crate) networks: Option<Arc<dyn berth_network_api::NetworkApi>>,
    /// Keeps the volumes containers use; without it a container may have only
    /// binds and tmpfs.
    pub(crate) volumes: Option<Arc<dyn berth_volume_api::VolumeApi>>,
}

/// The filters of `docker container prune`: `until` (a time or Unix seconds),
/// `label` and `label!` (`key` or `key=value`).
#[derive(Debug, Default)]
struct PruneFilter {
    until: Option<i64>,
    labels: Vec<String>,
    not_labels: Vec<String>,
}

impl PruneFilter {
    fn parse(filters: &[Filter]) -> Result<Self> {
        let mut f = PruneFilter::default();
        for filter in filters {
            match filter.key.as_str() {
                "label" => f.labels.extend(filter.values.iter().cloned()),
                "label!" => f.not_labels.extend(filter.values.iter().cloned()),
                "until" => {
                    let v = filter.values.first().map(String::as_str).unwrap_or_default();
                    let t = berth_core::id::parse_until(v, time::OffsetDateTime::now_utc())?.unix_timestamp();
                    f.until = Some(t);
                }
                other => return Err(Error::invalid(format!("invalid filter '{other}'"))),
            }
        }
        Ok(f)
    }

    fn matches(&self, c: &pb::Container) -> bool {
        let created = berth_core::id::parse_rfc3339(&c.created).map(|t| t.unix_timestamp()).unwrap_or(0);
        let has = |l: &String| match l.split_once('=') {
            Some((k, v)) => c.labels.iter().any(|kv| kv.key == k && kv.value == v),
            None => c.labels.iter().any(|kv| &kv.key == l),
        };
        self.until.is_none_or(|u| created < u) && self.labels.iter().all(has) && !self.not_labels.iter().any(has)
    }
}

/// The bytes in the files under `dir` (not following symlinks).
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(|e| e.ok())
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

/// A HostConfig whose LogConfig is filled in as dockerd does at create: the
/// json-file driver, with the daemon's `log-opts` when the container sets none.
fn with_log_defaults(mut hc: HostConfig, daemon: &std::collections::BTreeMap<String, String>) -> HostConfig {
    let log: &mut LogConfig = &mut hc.log_config;
    if log.kind.is_empty() {
        log.kind = "json-file".into();
    }
    if log.config.is_empty() && log.kind == "json-file" {
        log.config = daemon.clone();
    }
    hc
}

/// The create request's documents, parsed once: a wrong type or a malformed
/// document is a 400 naming it.
fn parse_create(req: &pb::CreateContainerRequest) -> Result<CreateBody> {
    let config = berth_models::parse("container config", &req.config).map_err(Error::invalid)?;
    let host_config = berth_models::parse_or_default("HostConfig", &req.host_config).map_err(Error::invalid)?;
    let networking_config: NetworkingConfig =
        berth_models::parse_or_default("NetworkingConfig", &req.networking_config).map_err(Error::invalid)?;
    Ok(CreateBody { config, host_config, networking_config })
}

/// `docker create --platform`: the image found must be of that platform, else
/// a 404 with dockerd's words (the CLI then tries a pull of that platform).
fn check_platform(reference: &str, wanted: &str, image: &ImageConfig) -> Result<()> {
    if wanted.is_empty() {
        return Ok(());
    }
    let mut parts = wanted.split('/');
    let (os, arch, variant) = (parts.next().unwrap_or(""), parts.next(), parts.next());
    let arch_of = |a: &str| match a {
        "x86_64" | "x86-64" => "amd64".to_string(),
        "aarch64" => "arm64".to_string(),
        other => other.to_ascii_lowercase(),
    };
    let matches = os.eq_ignore_ascii_case(&image.os)
        && arch.is_none_or(|a| arch_of(a) == arch_of(&image.architecture))
        && variant.is_none_or(|v| image.variant.is_empty() || v == image.variant);
    if matches {
        return Ok(());
    }
    let actual = [image.os.as_str(), image.architecture.as_str(), image.variant.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("/");
    Err(Error::not_found(format!(
        "image with reference {reference} was found but does not match the specified platform: wanted {wanted}, actual: {actual}"
    )))
}

fn conflict_name(name: &str, id: &str) -> Error {
    Error::conflict(format!(
        "Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name."
    ))
}

impl LocalRuntime {
    /// Publishes a container event (`create`, `start`, `die`, ...) with the
    /// container's name, image and labels and `extra` attributes.
    pub(crate) fn emit<const N: usize>(&self, c: &pb::Container, action: &str, extra: [(&str, String); N]) {
        crate::record::emit(&self.config.events, c, action, extra);
    }

    /// The bus this runtime publishes on.
    pub fn events(&self) -> Arc<berth_core::events::EventBus> {
        self.config.events.clone()
    }

    /// Opens the service's state under `dir` (`<data-root>/runtime`).
    pub async fn open(
        dir: &Path,
        state: &berth_core::db::State,
        images: Arc<dyn ImageApi>,
        networks: Arc<dyn berth_network_api::NetworkApi>,
        volumes: Arc<dyn berth_volume_api::VolumeApi>,
        config: RuntimeConfig,
    ) -> Result<Self> {
        crate::lifecycle::validate_log_opts(config.log_opts.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
        let pool = state.open("runtime", dir, &MIGRATIONS).await?;
        let rt = Self {
            store: Arc::new(CachedContainerStore::new(SqlContainerStore::new(pool))),
            images,
            host: crate::lifecycle::Host::new(dir.to_path_buf()),
            execs: Default::default(),
            config,
            networks: Some(networks),
            volumes: Some(volumes),
        };
        rt.reconnect().await?;
        rt.restart_at_boot();
        Ok(rt)
    }

    /// A runtime over any store, keeping container files under a temporary directory.
    pub fn with_store(store: Arc<dyn ContainerStore>, images: Arc<dyn ImageApi>) -> Self {
        Self {
            store,
            images,
            host: crate::lifecycle::Host::new(std::env::temp_dir().join("berth-runtime")),
            execs: Default::default(),
            config: RuntimeConfig::default(),
            networks: None,
            volumes: None,
        }
    }

    /// Resolves a name, full ID or unique ID prefix.
    pub(crate) async fn resolve(&self, reference: &str) -> Result<pb::Container> {
        let needle = reference.strip_prefix('/').unwrap_or(reference);
        if needle.is_empty() {
            return Err(Error::invalid("container name or ID must not be empty"));
        }
        let all = self.store.containers().await?;
        if let Some(c) = all.iter().find(|c| c.id == needle || c.name == needle) {
            return Ok(c.clone());
        }
        let matches: Vec<&pb::Container> = all.iter().filter(|c| c.id.starts_with(needle)).collect();
        match matches.as_slice() {
            [c] => Ok((*c).clone()),
            [] => Err(Error::not_found(format!("No such container: {reference}"))),
            _ => Err(Error::invalid(format!("Multiple IDs found with provided prefix: {reference}"))),
        }
    }

    async fn filter(&self, list: Vec<pb::Container>, filters: &[Filter]) -> Result<Vec<pb::Container>> {
        const KEYS: [&str; 12] = [
            "id", "name", "label", "status", "ancestor", "exited", "before", "since", "volume", "network", "health",
            "is-task",
        ];
        if let Some(f) = filters.iter().find(|f| !KEYS.contains(&f.key.as_str())) {
            return Err(Error::invalid(format!("invalid filter '{}'", f.key)));
        }
        let values = |key: &str| -> Vec<&str> {
            filters.iter().filter(|f| f.key == key).flat_map(|f| f.values.iter().map(String::as_str)).collect()
        };
        let mut statuses = Vec::new();
        for s in values("status") {
            match ContainerStatus::ALL.into_iter().find(|c| c.as_str() == s) {
                Some(c) => statuses.push(c),
                None => return Err(Error::invalid(format!("invalid filter 'status={s}'"))),
            }
        }
        let mut exited = Vec::new();
        for e in values("exited") {
            exited.push(e.parse::<i64>().map_err(|_| Error::invalid(format!("invalid filter 'exited={e}'")))?);
        }
        let mut ancestors = Vec::new();
        for a in values("ancestor") {
            match self.images.inspect(a).await {
                Ok(img) => ancestors.push(img.id),
                Err(e) if e.kind() == ErrorKind::NotFound => ancestors.push(a.to_string()),
                Err(e) => return Err(e),
            }
        }
        let before = match values("before").first() {
            Some(r) => Some(self.resolve(r).await?.created),
            None => None,
        };
        let since = match values("since").first() {
            Some(r) => Some(self.resolve(r).await?.created),
            None => None,
        };
        let (ids, names, labels) = (values("id"), values("name"), values("label"));
        let healths = values("health");
        if let Some(h) = healths.iter().find(|h| !matches!(**h, "starting" | "healthy" | "unhealthy" | "none")) {
            return Err(Error::invalid(format!("Unrecognised filter value for health: {h}")));
        }
        let health_of = |c: &pb::Container| -> String {
            c.state
                .as_ref()
                .filter(|s| !s.health.is_empty())
                .and_then(|s| berth_models::parse::<berth_models::container::Health>("health", &s.health).ok())
                .map(|h| h.status)
                .unwrap_or_else(|| "none".into())
        };
        Ok(list
            .into_iter()
            .filter(|c| ids.is_empty() || ids.iter().any(|i| c.id.starts_with(i)))
            .filter(|c| healths.is_empty() || healths.contains(&health_of(c).as_str()))
            .filter(|c| names.is_empty() || names.iter().any(|n| c.name.contains(n.trim_start_matches('/'))))
            .filter(|c| statuses.is_empty() || statuses.contains(&status(c)))
            .filter(|c| {
                labels.iter().all(|l| match l.split_once('=') {
                    Some((k, v)) => c.labels.iter().any(|kv| kv.key == k && kv.value == v),
                    None => c.labels.iter().any(|kv| kv.key == *l),
                })
            })
            .filter(|c| ancestors.is_empty() || ancestors.iter().any(|a| c.image_id == *a || c.image == *a))
            .filter(|c| {
                exited.is_empty()
                    || (status(c) == ContainerStatus::Exited
                        && exited.contains(&c.state.as_ref().map(|s| s.exit_code).unwrap_or(0)))
            })
            .filter(|c| before.as_ref().is_none_or(|b| c.created < *b))
            .filter(|c| since.as_ref().is_none_or(|s| c.created > *s))
            .collect())
    }
}

#[async_trait]
impl RuntimeApi for LocalRuntime {
    async fn create(&self, req: pb::CreateContainerRequest) -> Result<pb::CreateContainerResponse> {
        let body = parse_create(&req)?;
        let user = body.config;
        let mut host_config = with_log_defaults(body.host_config, &self.config.log_opts);
        validate_host_config(&host_config)?;
        crate::userns::validate(self.config.userns.as_ref(), &host_config)?;
        crate::spec::validate_ipc_mode(&host_config.ipc_mode)?;
        crate::spec::validate_pid_and_uts(&host_config, &user.hostname)?;
        // Stored with the runtime's name, as dockerd does.
        if host_config.runtime.is_empty() {
            host_config.runtime = crate::runtimes::DEFAULT.into();
        }
        self.config.runtimes.check(&host_config.runtime, host_config.init.unwrap_or(false))?;
        // Legacy links name containers that exist (dockerd checks at create).
        for link in host_config.links.iter().flatten() {
            let (name, _) = crate::links::parse(link);
            if self.resolve(&name).await.is_err() {
                return Err(Error::invalid(format!("could not get container for {name}")));
            }
        }
        host_config.restart_policy.validate().map_err(Error::invalid)?;
        if host_config.auto_remove && host_config.restart_policy.is_set() {
            return Err(Error::invalid("can't create 'AutoRemove' container with restart policy"));
        }
        crate::create::validate_healthcheck(user.healthcheck.as_ref())?;
        crate::create::validate_env(user.env())?;
        let macs = std::iter::once(&user.mac_address)
            .chain(body.networking_config.endpoints_config.values().map(|e| &e.mac_address));
        if let Some(bad) = macs.filter(|m| !m.is_empty()).find(|m| berth_network_api::parse_mac(m).is_none()) {
            return Err(Error::invalid(format!("invalid MAC address: {bad}")));
        }
        // A named network is looked up at start, as dockerd does (a 404 here would
        // make the docker CLI try to pull the image).
        // Binds, mounts and tmpfs are checked now, so a bad one fails create as in dockerd.
        crate::spec::user_mounts(&host_config)?;
        let from = self.volumes_from(&host_config).await?;
        let image_ref = user.image.clone();
        if image_ref.is_empty() {
            return Err(Error::invalid("config.Image must name an image"));
        }
        let requested = if req.name.is_empty() { None } else { Some(validate_name(&req.name)?) };
        let image = self.images.inspect(&image_ref).await?;
        let image_config: ImageConfig = berth_models::parse("image config", &image.config)
            .map_err(|e| Error::internal(format!("image {}: {e}", image.id)))?;
        check_platform(&image_ref, &req.platform, &image_config)?;
        let mut merged = merge_config(&user, &image_config.container_config());
        let (path, args) = command_line(&merged)?;
        let id = berth_core::id::random_id();
        if merged.hostname.is_empty() {
            // The host's name where the container shares the host's network
            // or UTS namespace (dockerd's choice), else the short ID.
            let host_name = (host_config.host_network() || host_config.uts_mode == "host")
                .then(|| nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()))
                .flatten();
            merged.hostname = host_name.unwrap_or_else(|| id[..12].to_string());
        }
        let existing = self.store.containers().await?;
        let name = match requested {
            Some(n) => {
                if let Some(c) = existing.iter().find(|c| c.name == n) {
                    return Err(conflict_name(&n, &c.id));
                }
                n
            }
            None => (0..100)
                .map(generate_name)
                .find(|n| !existing.iter().any(|c| &c.name == n))
                .unwrap_or_else(|| format!("berth_{}", &id[..12])),
        };
        let wanted = crate::volumes::plan(&merged, &host_config, from)?;
        let mounts = self.use_volumes(&id, wanted).await?;
        let container = pb::Container {
            id: id.clone(),
            name: name.clone(),
            image: image_ref,
            image_id: image.id,
            created: berth_core::id::now_rfc3339(),
            labels: vec![],
            path,
            args,
            state: Some(crate::record::state(ContainerStatus::Created)),
            config: berth_models::to_vec(&merged),
            host_config: {
                // Links as dockerd keeps them: `/child:/parent/alias`.
                if let Some(links) = host_config.links.as_mut() {
                    for l in links.iter_mut() {
                        *l = crate::links::normalize(l, &name);
                    }
                }
                // dockerd's default IPC mode, recorded (inspect shows it, whatever the client sent).
                if host_config.ipc_mode.is_empty() {
                    host_config.ipc_mode = "private".into();
                }
                berth_models::to_vec(&host_config)
            },
            networking_config: berth_models::to_vec(&body.networking_config),
            restart_count: 0,
            manually_stopped: false,
            mounts: serde_json::to_vec(&mounts).map_err(|e| Error::internal(e.to_string()))?,
        };
        if let Err(e) = self.store.insert(&container).await {
            self.release_volumes(&id, true).await;
            return Err(if e.kind() == ErrorKind::AlreadyExists {
                conflict_name(&name, "another container")
            } else {
                e
            });
        }
        tracing::info!(id = %id, name = %name, "container created");
        self.emit(&container, "create", []);
        Ok(pb::CreateContainerResponse { id, warnings: vec![] })
    }

    async fn inspect(&self, reference: &str) -> Result<pb::Container> {
        let mut c = self.resolve(reference).await?;
        // A container that does not run shows the networks it is configured
        // for, without addresses (dockerd; Compose and the SDKs read them).
        if !status(&c).is_live() {
            let recorded = c.state.as_ref().map(crate::record::network_settings).unwrap_or_default();
            if recorded.networks.is_empty() {
                let settings = self.configured_networks(&c).await?;
                let state = c.state.get_or_insert_with(|| crate::record::state(ContainerStatus::Created));
                state.network_settings = berth_models::to_vec(&settings);
            }
        }
        Ok(c)
    }

    async fn list(&self, all: bool, filters: Vec<Filter>, limit: i64) -> Result<Vec<pb::Container>> {
        let all = all || limit > 0;
        let mut out = self.filter(self.store.containers().await?, &filters).await?;
        let explicit_status = filters.iter().any(|f| f.key == "status" || f.key == "exited");
        if !all && !explicit_status {
            out.retain(|c| status(c).is_live() || status(c) == ContainerStatus::Removing);
        }
        if limit > 0 {
            out.truncate(limit as usize);
        }
        Ok(out)
    }

    async fn rename(&self, reference: &str, new_name: &str) -> Result<()> {
        let c = self.resolve(reference).await?;
        let new_name = validate_name(new_name)?;
        if new_name == c.name {
            return Err(Error::conflict("Renaming a container with the same name as its current name"));
        }
        if let Some(other) = self.store.containers().await?.iter().find(|o| o.name == new_name) {
            return Err(conflict_name(&new_name, &other.id));
        }
        self.store.rename(&c.id, &new_name).await.map_err(|e| {
            if e.kind() == ErrorKind::AlreadyExists { conflict_name(&new_name, "another container") } else { e }
        })?;
        // Legacy links follow the rename, as dockerd's: the links to it name
        // it anew (`/NEW:/PARENT/ALIAS`), and its own name their parent anew.
        for other in self.store.containers().await? {
            let Ok(mut hc) = crate::record::host_config(&other) else { continue };
            let Some(links) = hc.links.as_mut() else { continue };
            let mut changed = false;
            for l in links.iter_mut() {
                let (child, alias) = crate::links::parse(l);
                let child = if child == c.name { new_name.clone() } else { child };
                let parent = if other.id == c.id { new_name.as_str() } else { other.name.as_str() };
                let renamed = crate::links::normalize(&format!("{child}:{alias}"), parent);
                if renamed != *l {
                    *l = renamed;
                    changed = true;
                }
            }
            if changed {
                self.store.set_host_config(&other.id, &berth_models::to_vec(&hc)).await?;
            }
        }
        // The embedded DNS answers to the new name at once, as in dockerd.
        if let Some(n) = &self.networks
            && let Err(e) = n.rename(&c.id, &new_name).await
        {
            tracing::warn!(id = %c.id, error = %e, "rename the container's endpoints");
        }
        let renamed = pb::Container { name: new_name, ..c.clone() };
        self.emit(&renamed, "rename", [("oldName", format!("/{}", c.name))]);
        Ok(())
    }

    async fn remove(&self, reference: &str, force: bool, remove_volumes: bool) -> Result<()> {
        let c = self.resolve(reference).await?;
        let st = status(&c);
        if st == ContainerStatus::Restarting && !force {
            return Err(Error::conflict(
                "You cannot remove a restarting container. Stop the container before attempting removal or force remove",
            ));
        }
        if !st.can_remove() && !force {
            let verb = if st == ContainerStatus::Paused { "paused" } else { "running" };
            // dockerd 20.10's words (clients match "cannot remove a running container").
            return Err(Error::conflict(format!(
                "You cannot remove a {verb} container {}. Stop the container before attempting removal or force remove",
                c.id
            )));
        }
        if st == ContainerStatus::Restarting {
            // Between two runs: nothing to kill; the loop finds it gone.
            self.mark_manually_stopped(&c).await?;
        } else if st.is_live() {
            self.kill_and_wait(&c).await?;
        }
        if !self.store.delete(&c.id).await? {
            return Err(Error::not_found(format!("No such container: {reference}")));
        }
        self.host.forget(&c.id);
        self.forget_execs(&c.id);
        self.release_volumes(&c.id, remove_volumes).await;
        if let Some(n) = &self.networks
            && let Err(e) = n.disconnect(&c.id, "").await
        {
            tracing::warn!(id = %c.id, error = %e, "release the container's addresses");
        }
        tracing::info!(id = %c.id, name = %c.name, "container removed");
        self.emit(&c, "destroy", []);
        Ok(())
    }

    async fn start(&self, reference: &str) -> Result<bool> {
        self.start_container(reference).await
    }

    async fn stop(&self, reference: &str, timeout: i64, signal: &str) -> Result<bool> {
        self.stop_container(reference, timeout, signal).await
    }

    async fn changes(&self, reference: &str) -> Result<Vec<pb::Change>> {
        self.container_changes(reference).await
    }

    async fn export(&self, reference: &str) -> Result<berth_core::ByteStream> {
        self.export_container(reference).await
    }

    async fn stat_path(&self, reference: &str, path: &str) -> Result<pb::PathStat> {
        self.stat_in(reference, path).await
    }

    async fn get_archive(&self, reference: &str, path: &str) -> Result<(pb::PathStat, berth_core::ByteStream)> {
        self.archive_of(reference, path).await
    }

    async fn commit(&self, req: pb::CommitContainerRequest) -> Result<String> {
        self.commit_container(req).await
    }

    async fn put_archive(&self, options: pb::PutArchiveOptions, input: berth_core::ByteStream) -> Result<()> {
        self.extract_into(options, input).await
    }

    async fn runtime_info(&self) -> Result<pb::RuntimeInfoResponse> {
        let own =
            pb::OciRuntime { name: crate::runtimes::DEFAULT.into(), path: self.host.shim_path().display().to_string() };
        let installed = self.config.runtimes.installed.iter();
        let others =
            installed.map(|(name, path)| pb::OciRuntime { name: name.clone(), path: path.display().to_string() });
        Ok(pb::RuntimeInfoResponse {
            runtimes: std::iter::once(own).chain(others).collect(),
            default_runtime: crate::runtimes::DEFAULT.into(),
            security_options: std::iter::once("name=seccomp,profile=builtin".to_string())
                .chain(self.config.userns.is_some().then(|| "name=userns".to_string()))
                .chain(self.config.no_new_privileges.then(|| "name=no-new-privileges".to_string()))
                .collect(),
        })
    }

    async fn size(&self, reference: &str) -> Result<pb::ContainerSizeResponse> {
        let c = self.resolve(reference).await?;
        let upper = self.host.bundle(&c.id).join("upper");
        let size_rw = tokio::task::spawn_blocking(move || berth_core::disk::dir_size(&upper))
            .await
            .map_err(|e| Error::internal(e.to_string()))? as i64;
        let image = self.images.inspect(&c.image_id).await.map(|i| i.size).unwrap_or(0);
        Ok(pb::ContainerSizeResponse { size_rw, size_root_fs: size_rw + image })
    }

    async fn restart(&self, reference: &str, timeout: i64, signal: &str) -> Result<()> {
        let c = self.resolve(reference).await?;
        self.stop_container(&c.id, timeout, signal).await?;
        self.start_container(&c.id).await?;
        self.emit(&c, "restart", []);
        Ok(())
    }

    async fn kill(&self, reference: &str, signal: &str) -> Result<()> {
        self.kill_container(reference, signal).await
    }

    async fn wait(&self, reference: &str, condition: &str) -> Result<pb::WaitContainerResponse> {
        self.wait_container(reference, condition).await
    }

    async fn logs(&self, req: pb::ContainerLogsRequest) -> Result<crate::lifecycle::LogStream> {
        self.log_stream(req).await
    }

    async fn attach(
        &self,
        req: pb::AttachRequest,
        input: crate::shim::InputStream,
    ) -> Result<crate::shim::OutputStream> {
        self.attach_container(req, input).await
    }

    async fn resize(&self, req: pb::ResizeTtyRequest) -> Result<()> {
        self.resize_tty(req).await
    }

    async fn create_exec(&self, req: pb::CreateExecRequest) -> Result<String> {
        self.exec_create(req).await
    }

    async fn start_exec(
        &self,
        req: pb::StartExecRequest,
        input: crate::shim::InputStream,
    ) -> Result<crate::shim::OutputStream> {
        self.exec_start(req, input).await
    }

    async fn inspect_exec(&self, exec_id: &str) -> Result<pb::InspectExecResponse> {
        self.exec_inspect(exec_id).await
    }

    async fn connect_network(&self, reference: &str, network: &str, endpoint_config: &[u8]) -> Result<()> {
        LocalRuntime::connect_network(self, reference, network, endpoint_config).await
    }

    async fn disconnect_network(&self, reference: &str, network: &str, force: bool) -> Result<()> {
        LocalRuntime::disconnect_network(self, reference, network, force).await
    }

    async fn pause(&self, reference: &str, unpause: bool) -> Result<()> {
        self.pause_container(reference, unpause).await
    }

    async fn top(&self, reference: &str, ps_args: &str) -> Result<pb::TopContainerResponse> {
        self.top_container(reference, ps_args).await
    }

    async fn stats(&self, reference: &str) -> Result<Vec<u8>> {
        self.stats_sample(reference).await
    }

    async fn update(&self, reference: &str, config: &[u8]) -> Result<Vec<String>> {
        self.update_container(reference, config).await
    }

    async fn prune(&self, filters: Vec<Filter>) -> Result<pb::PruneContainersResponse> {
        let rule = PruneFilter::parse(&filters)?;
        let mut out = pb::PruneContainersResponse::default();
        for c in self.store.containers().await? {
            if status(&c).is_live() || status(&c) == ContainerStatus::Removing || !rule.matches(&c) {
                continue;
            }
            let upper = self.host.bundle(&c.id).join("upper");
            let size = tokio::task::spawn_blocking(move || dir_size(&upper)).await.unwrap_or(0);
            match self.remove(&c.id, false, false).await {
                Ok(()) => {
                    out.deleted.push(c.id);
                    out.space_reclaimed += size;
                }
                Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Conflict) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    async fn image_in_use(&self, image_id: &str) -> Result<pb::ImageInUseResponse> {
        let users: Vec<pb::Container> =
            self.store.containers().await?.into_iter().filter(|c| c.image_id == image_id).collect();
        Ok(pb::ImageInUseResponse {
            running: users.iter().any(|c| status(c).is_running()),
            container_ids: users.into_iter().map(|c| c.id).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::ByteStream;
    use berth_image_api::pb as ipb;
    use serde_json::Value;

    struct OneImage;

    #[async_trait]
    impl ImageApi for OneImage {
        async fn list(&self, _: bool, _: Vec<Filter>) -> Result<Vec<ipb::Image>> {
            Ok(vec![])
        }
        async fn inspect(&self, reference: &str) -> Result<ipb::Image> {
            if reference.starts_with("busybox") || reference == "sha256:b0" {
                Ok(ipb::Image {
                    id: "sha256:b0".into(),
                    config: br#"{"config":{"Cmd":["sh"],"Env":["PATH=/bin"],"Labels":{"from":"image"}}}"#.to_vec(),
                    ..Default::default()
                })
            } else {
                Err(Error::not_found(format!("No such image: {reference}")))
            }
        }
        async fn history(&self, _: &str) -> Result<Vec<ipb::HistoryItem>> {
            Ok(vec![])
        }
        async fn tag(&self, _: &str, _: &str, _: &str) -> Result<()> {
            Ok(())
        }
        async fn remove(&self, _: &str, _: bool, _: bool) -> Result<Vec<ipb::DeleteItem>> {
            Ok(vec![])
        }
        async fn prune(&self, _: ipb::PruneImagesRequest) -> Result<ipb::PruneImagesResponse> {
            Ok(Default::default())
        }
        async fn load(&self, _: ByteStream) -> Result<Vec<ipb::LoadedImage>> {
            Ok(vec![])
        }
        async fn save(&self, _: Vec<String>) -> Result<ByteStream> {
            Err(Error::not_implemented("save"))
        }
        async fn import(&self, _: ipb::ImportOptions, _: ByteStream) -> Result<String> {
            Err(Error::not_implemented("import"))
        }
        async fn commit(&self, _: ipb::CommitOptions, _: ByteStream) -> Result<String> {
            Err(Error::not_implemented("commit"))
        }
        async fn build(&self, _: ipb::BuildOptions, _: ByteStream) -> Result<berth_image_api::BuildStream> {
            Err(Error::not_implemented("build"))
        }
        async fn store_info(&self) -> Result<ipb::StoreInfoResponse> {
            Ok(Default::default())
        }
        async fn pull(&self, _: ipb::PullImageRequest) -> Result<berth_image_api::ProgressStream> {
            Err(Error::unavailable("no registries in this test"))
        }
        async fn push(&self, _: ipb::PushImageRequest) -> Result<berth_image_api::ProgressStream> {
            Err(Error::unavailable("no registries in this test"))
        }
        async fn login(&self, _: ipb::RegistryAuth) -> Result<ipb::LoginResponse> {
            Err(Error::unavailable("no registries in this test"))
        }
    }

    struct NoNetworks;

    #[async_trait]
    impl berth_network_api::NetworkApi for NoNetworks {
        async fn list(&self, _: Vec<Filter>) -> Result<Vec<berth_network_api::pb::Network>> {
            Ok(vec![])
        }
        async fn connect(
            &self,
            _: berth_network_api::pb::ConnectContainerRequest,
        ) -> Result<berth_network_api::pb::Endpoint> {
            Err(Error::unavailable("no networks in this test"))
        }
        async fn disconnect(&self, _: &str, _: &str) -> Result<()> {
            Ok(())
        }
        async fn create(
            &self,
            _: berth_network_api::pb::CreateNetworkRequest,
        ) -> Result<berth_network_api::pb::Network> {
            Err(Error::unavailable("no networks in this test"))
        }
        async fn inspect(&self, r: &str) -> Result<berth_network_api::pb::Network> {
            Err(Error::not_found(format!("network {r} not found")))
        }
        async fn remove(&self, r: &str) -> Result<()> {
            Err(Error::not_found(format!("network {r} not found")))
        }
        async fn prune(&self, _: Vec<Filter>) -> Result<Vec<String>> {
            Ok(vec![])
        }
        async fn publish(
            &self,
            _: berth_network_api::pb::PublishPortsRequest,
        ) -> Result<Vec<berth_network_api::pb::PortMapping>> {
            Err(Error::unavailable("no networks in this test"))
        }
        async fn rename(&self, _: &str, _: &str) -> Result<()> {
            Ok(())
        }
    }

    async fn runtime() -> (tempfile::TempDir, LocalRuntime) {
        let dir = tempfile::tempdir().expect("tmp");
        let rt = LocalRuntime::open(
            dir.path(),
            &Default::default(),
            Arc::new(OneImage),
            Arc::new(NoNetworks),
            Arc::new(
                berth_volume::LocalVolumes::open(&dir.path().join("volume"), &Default::default())
                    .await
                    .expect("volumes"),
            ),
            RuntimeConfig::default(),
        )
        .await
        .expect("open");
        (dir, rt)
    }

    fn req(name: &str, config: Value) -> pb::CreateContainerRequest {
        pb::CreateContainerRequest {
            name: name.into(),
            config: serde_json::to_vec(&config).expect("json"),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn create_merges_and_names() {
        let (_d, rt) = runtime().await;
        let id =
            rt.create(req("web", serde_json::json!({"Image": "busybox", "Env": ["A=1"]}))).await.expect("create").id;
        let c = rt.inspect("web").await.expect("by name");
        assert_eq!(c.id, id);
        assert_eq!(c.path, "sh");
        assert_eq!(c.image_id, "sha256:b0");
        assert_eq!(c.labels.first().map(|kv| kv.key.as_str()), Some("from"));
        let cfg: Value = serde_json::from_slice(&c.config).expect("json");
        assert_eq!(cfg["Env"], serde_json::json!(["A=1", "PATH=/bin"]));
        assert_eq!(cfg["Hostname"], serde_json::json!(&id[..12]));
        assert_eq!(rt.inspect(&id[..6]).await.map(|c| c.name).ok().as_deref(), Some("web"));
        let clash = rt.create(req("/web", serde_json::json!({"Image": "busybox"}))).await.expect_err("clash");
        assert_eq!(clash.kind(), ErrorKind::Conflict);
        assert!(clash.message().contains("is already in use by container"), "{clash}");
        let generated = rt.create(req("", serde_json::json!({"Image": "busybox"}))).await.expect("generated");
        assert!(rt.inspect(&generated.id).await.expect("get").name.contains('_'));
    }

    #[tokio::test]
    async fn create_errors() {
        let (_d, rt) = runtime().await;
        let missing = rt.create(req("a1", serde_json::json!({"Image": "nope"}))).await.expect_err("404");
        assert_eq!(missing.kind(), ErrorKind::NotFound);
        let bad = rt.create(req("a b", serde_json::json!({"Image": "busybox"}))).await.expect_err("name");
        assert_eq!(bad.kind(), ErrorKind::InvalidArgument);
        assert!(rt.list(true, vec![], 0).await.expect("list").is_empty(), "nothing half-created");
    }

    #[tokio::test]
    async fn list_filters_rename_remove() {
        let (_d, rt) = runtime().await;
        rt.create(req("one", serde_json::json!({"Image": "busybox", "Labels": {"tier": "web"}}))).await.expect("one");
        rt.create(req("two", serde_json::json!({"Image": "busybox"}))).await.expect("two");
        let f = |k: &str, v: &str| vec![Filter { key: k.into(), values: vec![v.into()] }];
        assert!(rt.list(false, vec![], 0).await.expect("running only").is_empty());
        assert_eq!(rt.list(true, vec![], 0).await.expect("all").len(), 2);
        assert_eq!(rt.list(false, f("status", "created"), 0).await.expect("status").len(), 2);
        assert_eq!(rt.list(true, f("label", "tier=web"), 0).await.expect("label")[0].name, "one");
        assert_eq!(rt.list(true, f("name", "tw"), 0).await.expect("name")[0].name, "two");
        assert_eq!(rt.list(true, f("ancestor", "busybox"), 0).await.expect("ancestor").len(), 2);
        assert_eq!(rt.list(false, vec![], 1).await.expect("limit").len(), 1);
        assert!(rt.list(true, f("status", "sleepy"), 0).await.is_err());
        rt.rename("one", "uno").await.expect("rename");
        assert_eq!(rt.rename("uno", "two").await.expect_err("clash").kind(), ErrorKind::Conflict);
        rt.remove("uno", false, false).await.expect("remove");
        assert_eq!(rt.inspect("uno").await.expect_err("gone").kind(), ErrorKind::NotFound);
        let usage = rt.image_in_use("sha256:b0").await.expect("usage");
        assert_eq!(usage.container_ids.len(), 1);
    }

    #[test]
    fn prune_filters_like_dockerd() {
        let c = pb::Container {
            created: "2020-01-01T00:00:00Z".into(),
            labels: vec![berth_proto::types::v1::KeyValue { key: "keep".into(), value: "yes".into() }],
            ..Default::default()
        };
        let f = |k: &str, v: &str| Filter { key: k.into(), values: vec![v.into()] };
        assert!(PruneFilter::parse(&[]).expect("none").matches(&c));
        assert!(!PruneFilter::parse(&[f("label!", "keep")]).expect("label!").matches(&c));
        assert!(PruneFilter::parse(&[f("label", "keep=yes")]).expect("label").matches(&c));
        assert!(!PruneFilter::parse(&[f("label", "keep=no")]).expect("label").matches(&c));
        assert!(PruneFilter::parse(&[f("until", "2021-01-01T00:00:00Z")]).expect("until").matches(&c));
        assert!(!PruneFilter::parse(&[f("until", "1000")]).expect("until").matches(&c));
        assert!(PruneFilter::parse(&[f("until", "soon")]).is_err());
        assert!(PruneFilter::parse(&[f("colour", "red")]).is_err());
    }
}
