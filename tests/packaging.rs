//! What an operator installs: `packaging/build`, run on the binary under test (a debug
//! build stands in for the static release one), gives a .deb and a tarball whose install
//! script puts the same files in the same places; the unit passes `systemd-analyze
//! verify` and its hardening check. Needs dpkg-deb and systemd-analyze (`.ci/run`
//! installs them); without them the tests skip, or fail under `CI=true`.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The exposure `systemd-analyze security` may rate the unit at most (0 is fully
/// locked down, 10 not at all), times ten as its `--threshold` takes it.
const MAX_EXPOSURE_TENTHS: u32 = 20;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Whether `tool` runs here. Without it the test is skipped, but not under `CI=true`.
fn have(tool: &str) -> bool {
    let reason = format!("{tool} is missing");
    common::tool_ready(
        tool,
        &["--version"],
        &reason,
        "on Debian: apt-get install dpkg systemd",
    )
}

/// Runs `command`, which must succeed; its standard output.
fn run(command: &mut Command) -> String {
    let output = command.output().expect("run the command");
    assert!(
        output.status.success(),
        "{command:?}: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// Every file under `root`, by path relative to it: its mode and contents.
fn files(root: &Path) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let path = entry.expect("dir entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            if meta.is_dir() {
                dirs.push(path);
            } else {
                let relative = path.strip_prefix(root).expect("under root").to_owned();
                let mode = meta.permissions().mode() & 0o7777;
                found.insert(relative, (mode, std::fs::read(&path).expect("read")));
            }
        }
    }
    found
}

#[test]
fn the_deb_and_the_tarball_install_the_same_files() {
    if !have("dpkg-deb") {
        return;
    }
    let temp = tempfile::tempdir().expect("temp dir");
    let out = temp.path().join("packages");
    let printed = run(Command::new(repo().join("packaging/build"))
        .args(["--binary", env!("CARGO_BIN_EXE_datapool"), "--out"])
        .arg(&out));
    let version = env!("CARGO_PKG_VERSION");
    let deb = out.join(format!("datapool_{version}_amd64.deb"));
    let tarball = out.join(format!("datapool-{version}-x86_64-linux.tar.gz"));
    assert_eq!(
        printed.lines().collect::<Vec<_>>(),
        [deb.to_str().expect("path"), tarball.to_str().expect("path")]
    );

    let listing = run(Command::new("dpkg-deb").arg("--contents").arg(&deb));
    eprintln!("dpkg-deb --contents {}:\n{listing}", deb.display());
    let mut listed: Vec<&str> = listing
        .lines()
        .filter(|line| line.starts_with('-'))
        .filter_map(|line| line.split_whitespace().last())
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            "./etc/datapool/datapool.toml",
            "./lib/systemd/system/datapool.service",
            "./usr/bin/datapool",
            "./usr/share/doc/datapool/README.md",
        ]
    );
    let fields = run(Command::new("dpkg-deb").arg("--field").arg(&deb).args([
        "Package",
        "Version",
        "Architecture",
    ]));
    assert_eq!(
        fields,
        format!("Package: datapool\nVersion: {version}\nArchitecture: amd64\n")
    );

    let control = temp.path().join("control");
    run(Command::new("dpkg-deb")
        .arg("--control")
        .arg(&deb)
        .arg(&control));
    let conffiles = std::fs::read_to_string(control.join("conffiles")).expect("conffiles");
    assert_eq!(conffiles, "/etc/datapool/datapool.toml\n");
    for script in ["postinst", "prerm", "postrm"] {
        let shipped = std::fs::read(control.join(script)).expect("maintainer script");
        let source = std::fs::read(repo().join("packaging").join(script)).expect("source");
        assert_eq!(shipped, source, "{script}");
    }

    // The tarball's install script, into a root of its own, installs what the deb holds.
    let from_deb = temp.path().join("from-deb");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&from_deb));
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(temp.path()));
    let install = temp
        .path()
        .join(format!("datapool-{version}-x86_64-linux/install"));
    let from_tarball = temp.path().join("from-tarball");
    run(Command::new(&install).arg("--root").arg(&from_tarball));
    let installed = files(&from_tarball);
    assert!(installed == files(&from_deb), "the packages differ");
    let unit = &installed[Path::new("lib/systemd/system/datapool.service")].1;
    assert_eq!(
        unit,
        &std::fs::read(repo().join("systemd/datapool.service")).expect("unit")
    );

    let installed_binary = from_tarball.join("usr/bin/datapool");
    let said = run(Command::new(&installed_binary).env_clear().arg("--version"));
    assert!(
        said.starts_with(&format!("datapool {version} (git ")),
        "{said}"
    );

    // Installing again (an upgrade) keeps the operator's config.
    let config = from_tarball.join("etc/datapool/datapool.toml");
    std::fs::write(&config, "listen = \"0.0.0.0:9443\"\n").expect("edit the config");
    run(Command::new(&install).arg("--root").arg(&from_tarball));
    assert_eq!(
        std::fs::read_to_string(&config).expect("config"),
        "listen = \"0.0.0.0:9443\"\n"
    );
    assert_eq!(
        std::fs::read(config.with_extension("toml.new")).expect("the shipped config beside"),
        std::fs::read(repo().join("packaging/datapool.toml")).expect("default config")
    );
}

#[test]
fn the_unit_passes_systemd_analyze_verify_and_its_hardening_check() {
    if !have("systemd-analyze") {
        return;
    }
    let unit = repo().join("systemd/datapool.service");
    // `verify` checks the unit against a system: the host's units, and the binary
    // where ExecStart names it.
    let root = tempfile::tempdir().expect("temp dir");
    let units = root.path().join("lib/systemd/system");
    std::fs::create_dir_all(&units).expect("units dir");
    run(Command::new("cp")
        .arg("-a")
        .arg("/lib/systemd/system/.")
        .arg(&units));
    std::fs::copy(&unit, units.join("datapool.service")).expect("copy the unit");
    let bin = root.path().join("usr/bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    std::fs::copy(env!("CARGO_BIN_EXE_datapool"), bin.join("datapool")).expect("binary");
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.path().display()))
        .arg("datapool.service")
        .output()
        .expect("systemd-analyze verify");
    let said = [output.stdout, output.stderr].concat();
    // It exits 0 on warnings, such as an unknown setting: any output is a finding.
    assert!(
        output.status.success() && said.is_empty(),
        "systemd-analyze verify: {}\n{}",
        output.status,
        String::from_utf8_lossy(&said)
    );

    let report = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(format!("--threshold={MAX_EXPOSURE_TENTHS}"))
        .arg(&unit));
    // It fails past the threshold, printing the findings.
    eprintln!("{report}");
}
