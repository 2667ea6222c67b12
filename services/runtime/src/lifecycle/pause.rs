//! Freezing and thawing a running container (`docker pause`), and looking
//! inside a running one: its processes (`docker top`) and its resource use
//! (`docker stats`).

use std::collections::HashMap;
use std::path::PathBuf;

use berth_core::{Error, Result};
use berth_models::container::ContainerStatus;

use crate::pb;
use crate::service::{LocalRuntime, status};

impl LocalRuntime {
    /// Freezes a running container's processes with the freezer cgroup, or
    /// thaws a paused one; the status follows (`paused` shows in ps and
    /// `State.Paused`).
    pub(crate) async fn pause_container(&self, reference: &str, unpause: bool) -> Result<()> {
        let c = self.resolve(reference).await?;
        let now = status(&c);
        if unpause {
            if !now.can_unpause() {
                return Err(Error::conflict(format!("Container {} is not paused", c.id)));
            }
        } else if now == ContainerStatus::Paused {
            return Err(Error::conflict(format!("Container {} is already paused", c.id)));
        } else if !now.can_pause() {
            return Err(Error::conflict(format!("Container {} is not running", c.id)));
        }
        self.set_frozen(&c, !unpause).await?;
        self.emit(&c, if unpause { "unpause" } else { "pause" }, []);
        Ok(())
    }

    /// Thaws `c` if it is paused (stop and kill do, as on dockerd).
    pub(crate) async fn thaw_if_paused(&self, c: &pb::Container) -> Result<()> {
        if status(c) == ContainerStatus::Paused { self.set_frozen(c, false).await } else { Ok(()) }
    }

    pub(crate) async fn set_frozen(&self, c: &pb::Container, frozen: bool) -> Result<()> {
        let (root, id) = (self.host.cgroup_root.clone(), c.id.clone());
        tokio::task::spawn_blocking(move || crate::cgroups::freeze(&root, &id, frozen))
            .await
            .map_err(|e| Error::internal(e.to_string()))??;
        // The container may have exited meanwhile; its exit record wins.
        let current = self.resolve(&c.id).await?;
        if status(&current).is_running() {
            let mut state = current.state.unwrap_or_default();
            state.status = if frozen { ContainerStatus::Paused } else { ContainerStatus::Running }.as_str().into();
            self.store.set_state(&c.id, &state).await?;
        }
        Ok(())
    }

    /// One stats sample: Docker's document with the container's name and ID,
    /// zeroed when it is not running (as dockerd answers).
    pub(crate) async fn stats_sample(&self, reference: &str) -> Result<Vec<u8>> {
        let c = self.resolve(reference).await?;
        let (name, id) = (format!("/{}", c.name), c.id.clone());
        if status(&c) != ContainerStatus::Running && status(&c) != ContainerStatus::Paused {
            let empty = berth_models::stats::Stats::empty(name, id);
            return Ok(berth_models::to_vec(&empty));
        }
        let pid = c.state.as_ref().map(|s| s.pid).unwrap_or(0);
        let own_network = !crate::record::host_config(&c).map(|h| h.host_network()).unwrap_or(false);
        let root = self.host.cgroup_root.clone();
        let mut stats = tokio::task::spawn_blocking(move || crate::stats::sample(&root, &id, pid, own_network))
            .await
            .map_err(|e| Error::internal(e.to_string()))?;
        stats.name = name;
        stats.id = c.id;
        Ok(berth_models::to_vec(&stats))
    }

    /// The container's processes as `ps PS_ARGS` (default `-ef`) shows them,
    /// rows kept for the container's processes only; PIDs, parent PIDs and
    /// user names are the ones seen inside the container.
    pub(crate) async fn top_container(&self, reference: &str, ps_args: &str) -> Result<pb::TopContainerResponse> {
        let c = self.resolve(reference).await?;
        match status(&c) {
            s if s.is_running() => {}
            ContainerStatus::Restarting => {
                return Err(Error::conflict(format!(
                    "Container {} is restarting, wait until the container is running",
                    c.id
                )));
            }
            _ => return Err(Error::conflict(format!("Container {} is not running", c.id))),
        }
        let args: Vec<String> = if ps_args.trim().is_empty() {
            vec!["-ef".into()]
        } else {
            ps_args.split_whitespace().map(String::from).collect()
        };
        let pids = crate::cgroups::processes(&self.host.cgroup_root, &c.id);
        let output = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            tokio::process::Command::new("ps").args(&args).env("LC_ALL", "C").output(),
        )
        .await
        .map_err(|_| Error::internal("ps did not answer in 30 s"))?
        .map_err(|e| Error::internal(format!("Error running ps: {e}")))?;
        if !output.status.success() {
            let err = String::from_utf8_lossy(&output.stderr);
            return Err(Error::internal(format!("Error running ps: {} {}", output.status, err.trim())));
        }
        let init = c.state.as_ref().map(|s| s.pid).unwrap_or(0);
        let passwd =
            crate::spec::read_user_db(&PathBuf::from(format!("/proc/{init}/root")), "etc/passwd").unwrap_or_default();
        let users = user_names(&passwd);
        let (titles, rows) = parse_ps(&String::from_utf8_lossy(&output.stdout), &pids, |pid| proc_view(pid, &users))?;
        Ok(pb::TopContainerResponse {
            titles,
            processes: rows.into_iter().map(|values| pb::ProcessRow { values }).collect(),
        })
    }
}

/// uid to name, from a passwd file's text.
fn user_names(passwd: &str) -> HashMap<u32, String> {
    passwd
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some((f.get(2)?.parse().ok()?, f.first()?.to_string()))
        })
        .collect()
}

/// How a host process looks from inside its container: its PID there, its
/// parent's PID there (0 outside), and its effective user's name there.
#[derive(Debug, Clone, PartialEq, Eq)]
struct View {
    pid: String,
    ppid: String,
    user: String,
}

/// The innermost of the PIDs in an NSpid line (`NSpid: 4242 1`).
fn ns_pid(status: &str) -> Option<String> {
    status.lines().find_map(|l| l.strip_prefix("NSpid:")).and_then(|v| v.split_whitespace().last().map(String::from))
}

fn proc_view(pid: i32, users: &HashMap<u32, String>) -> Option<View> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |key: &str| status.lines().find_map(|l| l.strip_prefix(key)).map(str::trim);
    let ppid: i32 = field("PPid:")?.parse().ok()?;
    let euid: u32 = field("Uid:")?.split_whitespace().nth(1)?.parse().ok()?;
    // The parent is in the container when it shares our PID namespace.
    let same_ns = |p: i32| std::fs::read_link(format!("/proc/{p}/ns/pid")).ok();
    let parent = match (same_ns(pid), same_ns(ppid)) {
        (Some(a), Some(b)) if a == b => {
            std::fs::read_to_string(format!("/proc/{ppid}/status")).ok().and_then(|s| ns_pid(&s))
        }
        _ => None,
    };
    Some(View {
        pid: ns_pid(&status)?,
        ppid: parent.unwrap_or_else(|| "0".into()),
        user: users.get(&euid).cloned().unwrap_or_else(|| euid.to_string()),
    })
}

/// Parses `ps` output as dockerd does (the last column takes the rest of the
/// line), keeps the rows of `pids`, and shows each through `view`.
fn parse_ps(text: &str, pids: &[i32], view: impl Fn(i32) -> Option<View>) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    let mut lines = text.lines();
    let titles: Vec<String> = lines.next().unwrap_or_default().split_whitespace().map(String::from).collect();
    let column = |name: &str| titles.iter().position(|t| t == name);
    let pid_at = column("PID").ok_or_else(|| Error::internal("Couldn't find PID field in ps output"))?;
    let ppid_at = column("PPID");
    let user_at = column("UID").or_else(|| column("USER"));
    let mut rows = Vec::new();
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < titles.len() || titles.is_empty() {
            continue;
        }
        let pid: i32 =
            fields[pid_at].parse().map_err(|e| Error::internal(format!("Unexpected pid '{}': {e}", fields[pid_at])))?;
        if !pids.contains(&pid) {
            continue;
        }
        let mut row: Vec<String> = fields[..titles.len() - 1].iter().map(|s| s.to_string()).collect();
        row.push(fields[titles.len() - 1..].join(" "));
        if let Some(v) = view(pid) {
            row[pid_at] = v.pid;
            if let Some(i) = ppid_at {
                row[i] = v.ppid;
            }
            if let Some(i) = user_at {
                row[i] = v.user;
            }
        }
        rows.push(row);
    }
    Ok((titles, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PS: &str = "UID          PID    PPID  C STIME TTY          TIME CMD\n\
                      root           1       0  0 09:00 ?        00:00:01 /sbin/init\n\
                      root        4242    4200  0 09:01 ?        00:00:00 sleep 300\n\
                      www-data    4250    4242  0 09:01 pts/0    00:00:00 sh -c echo a  b\n";

    #[test]
    fn ps_rows_of_the_container_only_seen_from_inside() {
        let view = |pid| match pid {
            4242 => Some(View { pid: "1".into(), ppid: "0".into(), user: "root".into() }),
            4250 => Some(View { pid: "7".into(), ppid: "1".into(), user: "nobody".into() }),
            _ => None,
        };
        let (titles, rows) = parse_ps(PS, &[4242, 4250], view).expect("parse");
        assert_eq!(titles, ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]);
        assert_eq!(rows.len(), 2, "the host's init is not the container's");
        assert_eq!(rows[0], ["root", "1", "0", "0", "09:01", "?", "00:00:00", "sleep 300"]);
        assert_eq!(rows[1][..3], ["nobody", "7", "1"]);
        assert_eq!(rows[1][7], "sh -c echo a b", "the command takes the rest of the line");
    }

    #[test]
    fn ps_without_a_pid_column_is_an_error_as_on_dockerd() {
        let e = parse_ps("USER COMMAND\nroot init\n", &[1], |_| None).expect_err("no PID");
        assert_eq!(e.to_string(), "Couldn't find PID field in ps output");
        let e = parse_ps("PID CMD\nx init\n", &[1], |_| None).expect_err("bad pid");
        assert!(e.to_string().starts_with("Unexpected pid 'x'"));
    }

    #[test]
    fn a_process_seen_from_its_namespace() {
        assert_eq!(ns_pid("Name:\tsh\nNSpid:\t4242\t1\n").as_deref(), Some("1"));
        assert_eq!(ns_pid("NSpid:\t77\n").as_deref(), Some("77"));
        let users = user_names("root:x:0:0::/root:/bin/sh\nbad\nwww:x:33:33::/:/bin/false\n");
        assert_eq!(users.get(&33).map(String::as_str), Some("www"));
        let me = proc_view(std::process::id() as i32, &users).expect("ourselves");
        assert_eq!(me.pid, std::process::id().to_string(), "in the host's namespace, the host PID");
    }
}
