//! Starting a shim: `berth-shim --bundle DIR`, which detaches and reports on
//! its stdout, in one line, whether the container stands at its start barrier
//! (`ok PID`) or could not be made (`err CODE MESSAGE`).

use std::path::Path;

use berth_core::{Error, Result};

/// What a shim reported.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Report {
    /// The container's init stands at the barrier with this PID.
    Ready(i64),
    /// The container could not be made: the exit code dockerd would record
    /// (126, 127, 128) and why.
    Failed(i64, String),
}

impl Report {
    /// Reads a shim's report; anything else than its two forms is a failure
    /// that quotes what came.
    pub fn parse(report: &str) -> Report {
        let report = report.trim();
        if let Some(pid) = report.strip_prefix("ok ").and_then(|p| p.trim().parse::<i64>().ok()) {
            return Report::Ready(pid);
        }
        report
            .strip_prefix("err ")
            .and_then(|r| r.split_once(' '))
            .map(|(c, m)| Report::Failed(c.parse::<i64>().unwrap_or(128), m.to_string()))
            .unwrap_or_else(|| Report::Failed(128, format!("the shim did not report: {report:?}")))
    }
}

/// Starts `shim` on `bundle` and waits for its report (the detached shim
/// closes its stdout once it has reported).
pub(super) async fn launch(shim: &Path, bundle: &Path) -> Result<Report> {
    let (shim, bundle) = (shim.to_path_buf(), bundle.to_path_buf());
    tokio::task::spawn_blocking(move || -> Result<Report> {
        use std::io::Read;
        let mut child = std::process::Command::new(&shim)
            .arg("--bundle")
            .arg(&bundle)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| Error::unavailable(format!("start {}: {e}", shim.display())))?;
        let mut out = String::new();
        if let Some(mut stdout) = child.stdout.take() {
            let _ = stdout.read_to_string(&mut out);
        }
        let _ = child.wait();
        Ok(Report::parse(&out))
    })
    .await
    .map_err(|e| Error::internal(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_read_as_the_shim_writes_them() {
        assert_eq!(Report::parse("ok 4242\n"), Report::Ready(4242));
        assert_eq!(
            Report::parse("err 127 exec: \"nope\": executable file not found in $PATH\n"),
            Report::Failed(127, "exec: \"nope\": executable file not found in $PATH".into())
        );
        assert_eq!(Report::parse("err x broken"), Report::Failed(128, "broken".into()));
        assert_eq!(Report::parse(""), Report::Failed(128, "the shim did not report: \"\"".into()));
        assert!(matches!(Report::parse("ok notapid"), Report::Failed(128, m) if m.contains("notapid")));
    }
}
