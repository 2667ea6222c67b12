//! Tracing set-up shared by every binary: a level (or `RUST_LOG` filter) and text or JSON.
//!
//! Exporting to OpenTelemetry is a later step: it becomes one more layer here.

use tracing_subscriber::EnvFilter;

/// Output format of the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Levels accepted by `--log-level`, as dockerd names them.
pub const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "fatal"];

/// Checks a `--log-level` value.
pub fn validate_level(level: &str) -> Result<(), String> {
    if LEVELS.contains(&level) {
        Ok(())
    } else {
        Err(format!("invalid log level {level:?}: want one of {}", LEVELS.join(", ")))
    }
}

/// `--log-level` as a clap value parser.
pub fn parse_level(level: &str) -> Result<String, String> {
    validate_level(level).map(|()| level.to_string())
}

/// Installs the global subscriber; `RUST_LOG` overrides `level` when set.
pub fn init(level: &str, format: LogFormat) {
    let level = if level == "fatal" { "error" } else { level };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!("warn,berth={level},berthd={level},berth_core={level},berth_image={level},berth_runtime={level},berth_network={level},berth_volume={level},berth_gateway={level}"))
    });
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_ansi(ansi).with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
