//! The whole loop with the real binaries: train and publish, serve, quantise
//! and publish while serving, watch the server gate and promote it, roll
//! back, publish a version with an in-house ranker and see it gated and
//! served, stop with SIGTERM.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
mod common;

use common::bin;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn run(name: &str, args: &[&str]) -> String {
    let out = Command::new(bin(name)).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{name} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn http(addr: &str, method: &str, path: &str, auth: Option<&str>, body: &str) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    let auth = auth.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(s, "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{auth}Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1;
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// A seeded log: 400 shoppers, 300 products in 6 categories; each shopper
/// mostly buys in two favourite categories.
fn write_log(path: &Path) {
    let mut state = 7u64;
    let mut next = move |n: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % n
    };
    let mut out = String::from("user,item,rating,timestamp\n");
    for u in 0..400 {
        let (a, b) = (next(6), next(6));
        for t in 0..40 {
            let cat = if next(10) < 7 {
                a
            } else if next(2) == 0 {
                b
            } else {
                next(6)
            };
            let item = cat * 50 + next(50);
            out.push_str(&format!(
                "shopper-{u},SKU-{item:04}-M,{},{}\n",
                1 + next(5),
                1_700_000_000 + t * 3600
            ));
        }
    }
    std::fs::write(path, out).unwrap();
}

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
    }
}

fn wait_version(addr: &str, v: u64) -> Value {
    let start = Instant::now();
    loop {
        let (status, st) = http(addr, "GET", "/v1/models/recs", None, "");
        if status == 200 && st["version"] == v {
            return st;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "version {v} not serving: {st:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn train_publish_serve_quantize_promote_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("clicks.csv");
    write_log(&log);
    let models = dir.path().join("models");
    let recs = models.join("recs");
    let (log_s, recs_s) = (log.to_str().unwrap(), recs.to_str().unwrap());
    let train = [
        "--input",
        log_s,
        "--format",
        "csv",
        "--algo",
        "als",
        "--factors",
        "16",
        "--protocol",
        "recbole",
        "--quiet",
        "--publish",
        recs_s,
    ];
    run("vitrine-train", &train);
    assert!(recs.join("1/model.vtr").exists());

    let mut child = Command::new(bin("vitrine-server"))
        .args([
            "--models",
            models.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .envs([
            ("VITRINE_LOG_FORMAT", "json"),
            ("VITRINE_ADMIN_TOKEN", "ops-token"),
            ("VITRINE_LIFECYCLE_DEBOUNCE_MS", "50"),
            ("VITRINE_LIFECYCLE_ONLINE_MAX_DURATION_MS", "500"),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let v: Value =
            serde_json::from_str(&lines.next().expect("server exited").unwrap()).unwrap();
        if v["fields"]["message"] == "vitrine-server ready" {
            break v["fields"]["listen"].as_str().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {}); // keep draining logs
    let mut server = Server(child);
    let (status, rec) = http(
        &addr,
        "POST",
        "/v1/models/recs/recommend",
        None,
        r#"{"user": "shopper-5", "k": 5}"#,
    );
    assert_eq!(status, 200, "{rec}");
    assert_eq!(
        (
            rec["version"].as_u64(),
            rec["items"].as_array().unwrap().len()
        ),
        (Some(1), 5)
    );

    // Quantise the served model and publish it while the server runs.
    let out = run(
        "vitrine-quantize",
        &[
            "--in",
            recs.join("1/model.vtr").to_str().unwrap(),
            "--dtype",
            "int8",
            "--publish",
            recs_s,
            "--quiet",
        ],
    );
    assert!(out.contains("overlap@10"), "{out}");
    let st = wait_version(&addr, 2);
    assert_eq!(st["dtype"], "int8");
    let report: Value =
        serde_json::from_slice(&std::fs::read(recs.join("2/shadow-report.json")).unwrap()).unwrap();
    assert_eq!(report["outcome"], "promoted", "{report:#}");
    let (status, rec) = http(
        &addr,
        "POST",
        "/v1/models/recs/recommend",
        None,
        r#"{"user": "shopper-5", "k": 5}"#,
    );
    assert_eq!((status, rec["version"].as_u64()), (200, Some(2)));

    // Roll back with the admin token.
    let (status, body) = http(
        &addr,
        "POST",
        "/v1/models/recs/rollback",
        Some("ops-token"),
        "",
    );
    assert_eq!((status, body["version"].as_u64()), (200, Some(1)), "{body}");

    // A version with an in-house ranker: trained, exported as ONNX and
    // published with the model, gated as it answers, then served.
    let ranker = [
        "--ranker",
        "--ranker-candidates",
        "30",
        "--ranker-export",
        "always",
    ];
    run("vitrine-train", &[&train[..], &ranker[..]].concat());
    assert!(recs.join("3/ranker.onnx").exists() && recs.join("3/bundle.toml").exists());
    let st = wait_version(&addr, 3);
    assert_eq!(st["ranker"]["engine"], "tract", "{st:#}");
    assert_eq!(st["ranker"]["candidates"], 30);
    let report: Value =
        serde_json::from_slice(&std::fs::read(recs.join("3/shadow-report.json")).unwrap()).unwrap();
    assert_eq!(report["outcome"], "promoted", "{report:#}");
    let (status, rec) = http(
        &addr,
        "POST",
        "/v1/models/recs/recommend",
        None,
        r#"{"user": "shopper-5", "k": 5}"#,
    );
    assert_eq!((status, rec["version"].as_u64()), (200, Some(3)), "{rec}");

    // SIGTERM: drains and exits 0.
    let kill = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let start = Instant::now();
    loop {
        if let Some(s) = server.0.try_wait().unwrap() {
            assert!(s.success(), "{s:?}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(15));
        std::thread::sleep(Duration::from_millis(50));
    }
}
