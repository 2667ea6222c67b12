//! Medians, ratios and goals; the table on stdout, and JSON and Markdown files.

use std::path::Path;

use anyhow::Result;
use serde_json::json;

use crate::engine::Engine;

/// What a figure measures, which decides which way is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Milliseconds: lower is better.
    Ms,
    /// Memory: lower is better.
    MiB,
    /// Throughput: higher is better.
    PerSec,
    /// CPU use, percent of one core: lower is better.
    Cpu,
}

impl Unit {
    fn label(self) -> &'static str {
        match self {
            Unit::Ms => "ms",
            Unit::MiB => "MiB",
            Unit::PerSec => "req/s",
            Unit::Cpu => "% CPU",
        }
    }
}

/// One figure: samples per engine, in engine order (Berth first).
#[derive(Debug, Clone)]
pub struct Figure {
    name: String,
    unit: Unit,
    /// The goal as "Berth is N times better".
    goal: Option<f64>,
    engines: Vec<String>,
    samples: Vec<Vec<f64>>,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

impl Figure {
    /// A figure from its samples.
    pub fn new(name: &str, unit: Unit, goal: Option<f64>, engines: &[Engine], samples: Vec<Vec<f64>>) -> Self {
        Figure { name: name.into(), unit, goal, engines: engines.iter().map(|e| e.name.clone()).collect(), samples }
    }

    /// How many times better Berth is (above 1 is better), when both ran.
    pub fn ratio(&self) -> Option<f64> {
        let (b, d) = (median(self.samples.first()?), median(self.samples.get(1)?));
        let r = if self.unit == Unit::PerSec { b / d } else { d / b };
        r.is_finite().then_some(r)
    }

    fn cell(&self, i: usize) -> String {
        match self.samples.get(i) {
            Some(s) if !s.is_empty() => {
                format!("{:.1} ({:.1}-{:.1}, n={})", median(s), min(s), max(s), s.len())
            }
            _ => "-".into(),
        }
    }

    fn goal_text(&self) -> String {
        match (self.goal, self.ratio()) {
            (Some(g), Some(r)) => format!("{g}x: {}", if r >= g { "met" } else { "missed" }),
            (Some(g), None) => format!("{g}x"),
            _ => String::new(),
        }
    }

    /// One table line.
    pub fn line(&self) -> String {
        format!(
            "{:<48} {:>6} | {:<30} | {:<30} | {:>7} | {}",
            self.name,
            self.unit.label(),
            self.cell(0),
            self.cell(1),
            self.ratio().map(|r| format!("{r:.2}x")).unwrap_or_else(|| "-".into()),
            self.goal_text()
        )
    }
}

/// Writes `latest.json` and `latest.md` (and, unless smoke, asks
/// `bench/chart.py` for `latest.png`).
pub fn write(dir: &Path, figures: &[Figure], smoke: bool) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let stem = if smoke { "smoke" } else { "latest" };
    let host = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let when = std::process::Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%dT%H:%M:%SZ")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let rows: Vec<_> = figures
        .iter()
        .map(|f| {
            json!({
                "figure": f.name,
                "unit": f.unit.label(),
                "engines": f.engines,
                "samples": f.samples,
                "medians": f.samples.iter().map(|s| median(s)).collect::<Vec<_>>(),
                "ratio": f.ratio(),
                "goal": f.goal,
            })
        })
        .collect();
    let doc = json!({"when": when, "cpu": host, "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1), "figures": rows});
    std::fs::write(dir.join(format!("{stem}.json")), serde_json::to_string_pretty(&doc)?)?;
    let mut md = format!(
        "# Berth vs dockerd ({when})\n\n{host}, {} cores. Medians with (min-max, runs); ratio = how many times better \
         the first column is.\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    // A table per pair of engines compared (Berth and dockerd; then Berth
    // against itself with other settings), in the order they were measured.
    let mut last: Option<&[String]> = None;
    for f in figures {
        if last != Some(f.engines.as_slice()) {
            let head: Vec<&str> = f.engines.iter().map(String::as_str).chain(["-"]).take(2).collect();
            md.push_str(&format!(
                "\n| figure | unit | {} | {} | ratio | goal |\n|---|---|---|---|---|---|\n",
                head[0], head[1]
            ));
            last = Some(f.engines.as_slice());
        }
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            f.name,
            f.unit.label(),
            f.cell(0),
            f.cell(1),
            f.ratio().map(|r| format!("{r:.2}x")).unwrap_or_else(|| "-".into()),
            f.goal_text()
        ));
    }
    std::fs::write(dir.join(format!("{stem}.md")), md)?;
    if !smoke {
        let status = std::process::Command::new("/usr/bin/python3")
            .arg("bench/chart.py")
            .arg(dir.join(format!("{stem}.json")))
            .arg(dir.join(format!("{stem}.png")))
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("chart: bench/chart.py failed (needs python3-matplotlib)");
        }
    }
    println!("wrote {}", dir.join(format!("{stem}.md")).display());
    Ok(())
}
