//! The real binary: SIGTERM stops accepting, lets in-flight requests
//! finish, and exits 0.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vitrine_core::synthetic::{SyntheticSpec, embedding_model};

#[test]
fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let parts = embedding_model(&SyntheticSpec::demo());
    let dir = common::models_dir(&[("shop", &parts)]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_vitrine-server"))
        .args([
            "--models",
            dir.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .env("VITRINE_LOG_FORMAT", "json")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("server exited early").unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
        if v["fields"]["message"] == "vitrine-server ready" {
            break v["fields"]["listen"]
                .as_str()
                .unwrap()
                .parse::<std::net::SocketAddr>()
                .unwrap();
        }
    };
    let body = br#"{"user": "user-1", "k": 3}"#;
    let mut slow = TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST /v1/models/shop/recommend HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    slow.write_all(head.as_bytes()).unwrap();
    slow.write_all(&body[..5]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    std::thread::sleep(Duration::from_millis(300));
    // The listener is closed: new connections are refused.
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err(),
        "still accepting after SIGTERM"
    );
    // The request in flight completes.
    slow.write_all(&body[5..]).unwrap();
    let reply = common::read_reply(&mut slow).expect("in-flight request answered");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "did not exit after draining"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}
