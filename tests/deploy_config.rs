//! The Kubernetes manifests' host config (`cello.toml` in
//! `deploy/kubernetes/configmap.yaml`) is one the host accepts: `cello-host
//! check` reads it as `serve` would, so a key renamed or removed in the
//! host fails here, not in a cluster. (`tests/deploy_manifests.py` checks
//! the manifests themselves against Kubernetes' schemas.)

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The ConfigMap, from the repository root.
const CONFIG_MAP: &str = "deploy/kubernetes/configmap.yaml";

/// How long `check` may take over no component at all.
const CHECK_TIMEOUT: Duration = Duration::from_secs(60);

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .into()
}

/// The text of the ConfigMap's `cello.toml: |` literal block: the lines
/// after it indented deeper than its key, with that indentation removed.
fn configmap_cello_toml() -> String {
    let path = repository().join(CONFIG_MAP);
    let yaml = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{CONFIG_MAP}: {e}"));
    let mut lines = yaml.lines();
    let key = lines
        .find(|line| line.trim_start() == "cello.toml: |")
        .unwrap_or_else(|| panic!("{CONFIG_MAP} has no `cello.toml: |` block"));
    let key_indent = key.len() - key.trim_start().len();
    let block: Vec<&str> = lines
        .take_while(|line| line.trim().is_empty() || indent(line) > key_indent)
        .collect();
    let block_indent = block
        .iter()
        .filter(|line| !line.trim().is_empty())
        .map(|line| indent(line))
        .min()
        .unwrap_or_else(|| panic!("{CONFIG_MAP}: the `cello.toml` block is empty"));
    let mut text = String::new();
    for line in block {
        text.push_str(line.get(block_indent..).unwrap_or(""));
        text.push('\n');
    }
    text
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// `cello-host check --allow-empty --config FILE` over an empty directory,
/// with the Secret's variables set as the Deployment sets them (to
/// addresses where nothing listens: `check` reads the config, it does not
/// connect).
fn check(config: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cello.toml");
    std::fs::write(&file, config).unwrap();
    let components = dir.path().join("components");
    std::fs::create_dir(&components).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cello-host"))
        .arg("check")
        .arg("--allow-empty")
        .arg("--config")
        .arg(&file)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg(&components)
        .env("CELLO_POSTGRES_URL", "postgres://cello@127.0.0.1:9/cello")
        .env("CELLO_REDIS_URL", "redis://127.0.0.1:9/0")
        .env_remove("CELLO_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cello-host starts");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > CHECK_TIMEOUT {
            child.kill().unwrap();
            let output = child.wait_with_output().unwrap();
            panic!(
                "`cello-host check` did not finish within {CHECK_TIMEOUT:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn the_configmaps_cello_toml_is_a_config_the_host_accepts() {
    let config = configmap_cello_toml();
    assert!(config.contains("[cluster]"), "{config}");
    let output = check(&config);
    assert!(
        output.status.success(),
        "`cello-host check` refused {CONFIG_MAP}'s cello.toml:\n{}\n{config}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_key_the_host_does_not_know_in_that_config_fails_the_check() {
    // What the test above relies on: `check` reads the file, strictly.
    let config = configmap_cello_toml().replace("[cluster]", "[cluster]\nshards = 3");
    let output = check(&config);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("unknown field `shards`"), "{stderr}");
}
