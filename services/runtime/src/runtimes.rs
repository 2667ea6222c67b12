//! The OCI runtimes a container can run under (`docker run --runtime NAME`):
//! Berth's own shim (`berth`, the default) and the ones installed on the host
//! (`runc`, `crun`), found on `PATH` when the service starts. Another runtime
//! takes the same bundle (see `berth-shim`'s `oci` module); what differs is
//! adjusted here, as dockerd adjusts a spec for runc.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_core::{Error, Result};
use oci_spec::runtime::{MountBuilder, Spec};

/// The name of Berth's own runtime.
pub const DEFAULT: &str = "berth";
/// The runtimes Berth looks for, by binary name.
const KNOWN: [&str; 2] = ["runc", "crun"];
/// Inits for `--init` under another runtime, bound into the container as
/// dockerd binds its `docker-init`: static builds only, as the container may
/// have no C library.
const INITS: [&str; 2] = ["docker-init", "tini-static"];
/// Where the init appears in the container (dockerd's path).
const INIT_PATH: &str = "/sbin/docker-init";

/// The runtimes on this host.
#[derive(Debug, Clone, Default)]
pub struct Runtimes {
    /// Installed runtimes by name, with their binaries.
    pub installed: BTreeMap<String, PathBuf>,
    /// An init binary for `--init` under an installed runtime.
    pub init: Option<PathBuf>,
}

impl Runtimes {
    /// Looks for the known runtimes and an init on `PATH`.
    pub fn discover() -> Self {
        Self::find_in(
            &std::env::var("PATH")
                .unwrap_or_else(|_| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()),
        )
    }

    /// Looks in the `:`-separated directories of `path`.
    pub fn find_in(path: &str) -> Self {
        let find = |name: &str| {
            path.split(':').filter(|d| d.starts_with('/')).map(|d| Path::new(d).join(name)).find(|p| is_executable(p))
        };
        Runtimes {
            installed: KNOWN.iter().filter_map(|n| find(n).map(|p| (n.to_string(), p))).collect(),
            init: INITS.iter().find_map(|n| find(n)),
        }
    }

    /// The binary of runtime `name`: `None` for Berth's own (also ``), a 400
    /// with dockerd's message for a runtime this host does not have.
    pub fn resolve(&self, name: &str) -> Result<Option<&Path>> {
        match name {
            "" | DEFAULT => Ok(None),
            other => self
                .installed
                .get(other)
                .map(|p| Some(p.as_path()))
                .ok_or_else(|| Error::invalid(format!("unknown or invalid runtime name: {other}"))),
        }
    }

    /// Checks at create what a container asks of runtime `name`.
    pub fn check(&self, name: &str, init: bool) -> Result<()> {
        if self.resolve(name)?.is_some() && init && self.init.is_none() {
            return Err(Error::invalid(format!(
                "--init with runtime {name} needs docker-init or tini-static on the host's PATH"
            )));
        }
        Ok(())
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Adjusts a spec written for Berth's shim to another runtime: read-only binds
/// are made read-only all the way down (`rro`, which runc and crun know; the
/// shim does it for `ro` by itself), and `--init` becomes the host's init bound
/// read-only at `/sbin/docker-init` with the command after `--`, as dockerd does.
pub fn adapt_spec(spec: &mut Spec, init: Option<&Path>) -> Result<()> {
    let oci = |e: oci_spec::OciSpecError| Error::internal(format!("OCI spec: {e}"));
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for m in mounts.iter_mut() {
        let mut opts = m.options().clone().unwrap_or_default();
        if opts.iter().any(|o| o.starts_with(crate::spec::SUBPATH_OPTION)) {
            // Resolving a path inside a volume safely is the shim's (see
            // `crate::spec::SUBPATH_OPTION`); another runtime would bind the root.
            return Err(Error::invalid("a volume Subpath needs Berth's own runtime (the default)"));
        }
        if opts.iter().any(|o| o == "rbind") && opts.iter().any(|o| o == "ro") && !opts.iter().any(|o| o == "rro") {
            opts.push("rro".into());
            m.set_options(Some(opts));
        }
    }
    if let Some(init) = init {
        mounts.push(
            MountBuilder::default()
                .destination(INIT_PATH)
                .typ("bind")
                .source(init)
                .options(vec!["bind".to_string(), "ro".to_string(), "rprivate".to_string()])
                .build()
                .map_err(oci)?,
        );
        if let Some(process) = spec.process_mut() {
            let args = [INIT_PATH.to_string(), "--".to_string()]
                .into_iter()
                .chain(process.args().clone().unwrap_or_default())
                .collect();
            process.set_args(Some(args));
        }
    }
    spec.set_mounts(Some(mounts));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtimes_are_found_on_the_path_and_unknown_names_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).expect("mkdir");
        let write = |name: &str, mode: u32| {
            use std::os::unix::fs::PermissionsExt;
            let p = bin.join(name);
            std::fs::write(&p, "#!/bin/sh\n").expect("write");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        };
        write("runc", 0o755);
        write("crun", 0o644);
        write("tini-static", 0o755);
        let r = Runtimes::find_in(&format!("relative:{}:/nonexistent", bin.display()));
        assert_eq!(r.installed.keys().collect::<Vec<_>>(), vec!["runc"], "crun is not executable");
        assert_eq!(r.init, Some(bin.join("tini-static")));
        assert_eq!(r.resolve("").ok(), Some(None));
        assert_eq!(r.resolve("berth").ok(), Some(None));
        assert_eq!(r.resolve("runc").ok().flatten(), Some(bin.join("runc").as_path()));
        let err = r.resolve("crun").expect_err("not installed");
        assert_eq!(err.message(), "unknown or invalid runtime name: crun");
        assert!(r.check("runc", true).is_ok());
        let no_init = Runtimes { init: None, ..r };
        assert!(no_init.check("runc", true).is_err_and(|e| e.message().contains("--init")));
        assert!(no_init.check("berth", true).is_ok(), "Berth's shim is its own init");
    }

    #[test]
    fn a_spec_for_another_runtime_has_recursive_ro_binds_and_the_init() {
        let mut spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {"user": {"uid": 0, "gid": 0}, "args": ["sh", "-c", "true"], "cwd": "/"},
            "root": {"path": "rootfs"},
            "mounts": [
                {"destination": "/host", "type": "bind", "source": "/", "options": ["rbind", "ro", "rprivate"]},
                {"destination": "/data", "type": "bind", "source": "/srv", "options": ["rbind", "rw", "rprivate"]},
                {"destination": "/proc", "type": "proc", "source": "proc"}
            ]
        }))
        .expect("spec");
        adapt_spec(&mut spec, Some(Path::new("/usr/bin/tini-static"))).expect("adapt");
        let v = serde_json::to_value(&spec).expect("json");
        assert_eq!(v["mounts"][0]["options"], serde_json::json!(["rbind", "ro", "rprivate", "rro"]));
        assert_eq!(v["mounts"][1]["options"], serde_json::json!(["rbind", "rw", "rprivate"]));
        assert_eq!(v["mounts"][3]["destination"], "/sbin/docker-init");
        assert_eq!(v["mounts"][3]["source"], "/usr/bin/tini-static");
        assert_eq!(v["process"]["args"], serde_json::json!(["/sbin/docker-init", "--", "sh", "-c", "true"]));
    }
}
