//! The disk's floor for datapool's tail latency: appends of 4 KiB to a file in `--dir`,
//! each made durable with `fdatasync`, the way the journal makes an accepted write
//! durable before its 202. No request can be answered sooner than one of these, so
//! `bench/run` prints them beside its latency figures.
//!
//! Prints p50/p99/max and a `FSYNC …` line for `bench/run`.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;

#[path = "support.rs"]
mod support;
use support::{ms, percentile};

/// What one append writes: a small journal record group.
const WRITE_BYTES: usize = 4096;

/// Command-line settings.
#[derive(Debug, Parser)]
#[command(about = "Times 4 KiB appends, each followed by fdatasync")]
struct Args {
    /// A directory on the filesystem to measure (a file is made there and removed).
    #[arg(long)]
    dir: PathBuf,
    /// How many appends to time.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(10..=1_000_000))]
    count: u32,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let path = args.dir.join("fsync-probe");
    let result = measure(&path, args.count);
    let _ = std::fs::remove_file(&path);
    let mut took = result?;
    took.sort_unstable();
    let at = |q| percentile(&took, q).map_or(0.0, ms);
    println!(
        "{} appends of {WRITE_BYTES} bytes + fdatasync: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        took.len(),
        at(50.0),
        at(99.0),
        at(100.0)
    );
    println!(
        "FSYNC p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        at(50.0),
        at(99.0),
        at(100.0)
    );
    Ok(())
}

/// Each append's time from write to the end of its `fdatasync`.
fn measure(path: &Path, count: u32) -> anyhow::Result<Vec<Duration>> {
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    let block = [0x5a_u8; WRITE_BYTES];
    let mut took = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let start = Instant::now();
        file.write_all(&block).context("appending")?;
        file.sync_data().context("fdatasync")?;
        took.push(start.elapsed());
    }
    Ok(took)
}
