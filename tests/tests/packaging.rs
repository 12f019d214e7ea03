//! What can be checked of the packaging without a Docker engine or a
//! cluster (CI also runs promtool and kubernetes-validate on configs/):
//! the Dockerfile copies every binary the workspace builds and nothing that
//! does not exist; the Kubernetes ConfigMap holds a server configuration
//! the server accepts; the CronJob's commands use flags the binaries have;
//! the dashboard and alert rules only query metrics the server defines.

mod common;

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Binary targets of the workspace, from `cargo metadata`.
fn workspace_binaries() -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap())
        .filter(|t| t["kind"].as_array().unwrap().iter().any(|k| k == "bin"))
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn dockerfile_copies_every_binary_and_only_existing_paths() {
    let docker = read("Dockerfile");
    let copied: BTreeSet<String> = docker
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("COPY --from=build /src/target/release/")
        })
        .map(|rest| rest.split_whitespace().next().unwrap().to_string())
        .collect();
    assert_eq!(
        copied,
        workspace_binaries(),
        "binaries copied into the image"
    );
    // The build stage builds the packages those binaries belong to.
    for p in [
        "vitrine-server",
        "vitrine-train",
        "vitrine-quantize",
        "vitrine-loadtest",
        "vitrine-core",
    ] {
        assert!(
            docker.contains(&format!("-p {p}")),
            "build stage misses {p}"
        );
    }
    // Files copied from the build context exist.
    for line in docker.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("COPY ")
            && !rest.starts_with("--from")
        {
            let src = rest.split_whitespace().next().unwrap();
            if src != "." {
                assert!(root().join(src).exists(), "Dockerfile copies missing {src}");
            }
        }
    }
    // The runtime stage runs as the non-root user and checks health.
    let runtime = &docker[docker.find("AS runtime").unwrap()..];
    assert!(runtime.contains("USER 10001"), "non-root user");
    assert!(runtime.contains("HEALTHCHECK") && runtime.contains("/healthz"));
    assert!(runtime.contains("VOLUME [\"/models\"]") && runtime.contains("EXPOSE 8080"));
    let ignore = read(".dockerignore");
    assert!(
        ignore.lines().any(|l| l.trim() == "target/"),
        "target/ is not sent to the daemon"
    );
}

fn yaml_docs(rel: &str) -> Vec<serde_norway::Value> {
    use serde::Deserialize;
    serde_norway::Deserializer::from_str(&read(rel))
        .map(|d| serde_norway::Value::deserialize(d).unwrap())
        .collect()
}

#[test]
fn configmap_holds_a_configuration_the_server_accepts() {
    let docs = yaml_docs("configs/k8s/configmap.yaml");
    let toml = docs[0]["data"]["vitrine.toml"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vitrine.toml");
    std::fs::write(&file, toml).unwrap();
    let config = vitrine_server::config::load(Some(&file), &|_| None, &Default::default())
        .unwrap_or_else(|e| panic!("configs/k8s/configmap.yaml: {e:#}"));
    assert_eq!(config.listen, "0.0.0.0:8080", "reachable from the Service");
    assert_eq!(
        config.models_dir,
        Path::new("/models"),
        "the mounted volume"
    );
    // The Deployment mounts it where --config points, probes the real
    // routes and exposes the port the config listens on.
    let dep = &yaml_docs("configs/k8s/deployment.yaml")[0];
    let c = &dep["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["args"][1].as_str(), Some("/etc/vitrine/vitrine.toml"));
    assert_eq!(
        c["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );
    assert_eq!(c["ports"][0]["containerPort"].as_u64(), Some(8080));
}

/// Runs `binary --help`.
fn help(binary: &str) -> String {
    let out = Command::new(common::bin(binary))
        .arg("--help")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn cronjob_commands_use_flags_the_binaries_have() {
    let docs = yaml_docs("configs/k8s/cronjob.yaml");
    let script =
        docs[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"][0]
            .as_str()
            .unwrap()
            .replace("\\\n", " ");
    let mut checked = 0;
    for command in script.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let mut words = command.split_whitespace();
        let binary = words.next().unwrap();
        let text = help(binary);
        assert!(!text.is_empty(), "{binary} --help printed nothing");
        for flag in words.filter(|w| w.starts_with("--")) {
            assert!(text.contains(flag), "{binary} has no flag {flag}");
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} flags found in the CronJob");
}

/// Metric names the server defines (server/src/metrics.rs).
fn defined_metrics() -> BTreeSet<String> {
    read("server/src/metrics.rs")
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub const "))
        .filter_map(|l| l.split('"').nth(1))
        .filter(|n| n.starts_with("vitrine_"))
        .map(str::to_string)
        .collect()
}

fn used_metrics(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(p) = text[i..].find("vitrine_") {
        let start = i + p;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let name = &text[start..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        out.insert(base.to_string());
        i = end;
    }
    out
}

#[test]
fn dashboard_and_alerts_query_only_metrics_the_server_defines() {
    let defined = defined_metrics();
    assert!(defined.len() >= 8, "{defined:?}");
    for rel in [
        "configs/grafana/vitrine-dashboard.json",
        "configs/vitrine-alerts.yml",
    ] {
        let used = used_metrics(&read(rel));
        assert!(!used.is_empty(), "{rel} uses no metric");
        let unknown: Vec<_> = used.difference(&defined).collect();
        assert!(
            unknown.is_empty(),
            "{rel} queries undefined metrics {unknown:?}"
        );
    }
    let dash: Value =
        serde_json::from_str(&read("configs/grafana/vitrine-dashboard.json")).unwrap();
    let titles: Vec<&str> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    for want in [
        "Request rate",
        "Latency",
        "Errors",
        "versions",
        "Shadow",
        "fallback",
    ] {
        assert!(
            titles.iter().any(|t| t.contains(want)),
            "no panel about {want}: {titles:?}"
        );
    }
}
