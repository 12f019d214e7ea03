//! Bad input and bad clients: each gets a clear JSON error or is shed, and
//! the server keeps answering everyone else.

mod common;

use common::{TestServer, read_reply, request};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use vitrine_core::ElementType;
use vitrine_core::synthetic::{SyntheticSpec, embedding_model};

fn model() -> vitrine_core::artifact::ModelParts {
    let mut s = SyntheticSpec::demo();
    s.dtype = ElementType::Int8;
    embedding_model(&s)
}

fn error_of(s: &TestServer, path: &str, body: &[u8]) -> (u16, String, String) {
    let r = request(s.addr, "POST", path, &[], body);
    let v = r.json();
    (
        r.status,
        v["error"]["code"].as_str().unwrap_or("").to_string(),
        v["error"]["message"].as_str().unwrap_or("").to_string(),
    )
}

#[test]
fn malformed_requests_get_json_errors_that_say_what_is_wrong() {
    let m = model();
    let s = TestServer::start(&[("shop", &m)], |_| {});
    let p = "/v1/models/shop/recommend";
    let cases: Vec<(&[u8], u16, &str, &str)> = vec![
        (b"{\"user\": \"u\",", 400, "invalid_json", "EOF"),
        (b"", 400, "invalid_request", "empty"),
        (b"[1, 2]", 400, "invalid_json", "expected a JSON object"),
        (
            b"{\"user\": \"u\", \"k\": \"ten\"}",
            400,
            "invalid_json",
            "invalid type",
        ),
        (b"{\"user\": 7}", 400, "invalid_json", "invalid type"),
        (
            b"{\"user\": \"u\", \"k\": 0}",
            400,
            "invalid_request",
            "k = 0",
        ),
        (
            b"{\"user\": \"u\", \"k\": 1000000}",
            400,
            "invalid_request",
            "k = 1000000",
        ),
        (
            b"{\"user\": \"u\", \"k\": 1e30}",
            400,
            "invalid_json",
            "invalid type",
        ),
        (
            b"{\"user\": \"u\", \"k\": -3}",
            400,
            "invalid_json",
            "invalid value",
        ),
        (
            b"{\"user\": \"u\", \"colour\": 1}",
            400,
            "invalid_json",
            "unknown field `colour`",
        ),
        (b"{\"user\": \"\xff\xfe\"}", 400, "invalid_json", "line 1"),
        (
            b"{\"user\": \"u\", \"history\": {}}",
            400,
            "invalid_json",
            "invalid type",
        ),
    ];
    for (body, status, code, needle) in cases {
        let (st, c, msg) = error_of(&s, p, body);
        assert_eq!(
            (st, c.as_str()),
            (status, code),
            "{:?}: {msg}",
            String::from_utf8_lossy(body)
        );
        assert!(
            msg.contains(needle),
            "{:?}: {msg:?} lacks {needle:?}",
            String::from_utf8_lossy(body)
        );
    }
    let big_list = serde_json::json!({"user": "u", "exclude": vec!["x"; 10_001]}).to_string();
    let (st, _, msg) = error_of(&s, p, big_list.as_bytes());
    assert_eq!(st, 400);
    assert!(msg.contains("limits.max_list"), "{msg}");
    let batch =
        serde_json::json!({"requests": vec![serde_json::json!({"user": "u"}); 257]}).to_string();
    let (st, _, msg) = error_of(&s, "/v1/models/shop/recommend:batch", batch.as_bytes());
    assert_eq!(st, 400);
    assert!(msg.contains("limits.max_batch"), "{msg}");
    // Unknown models, routes and methods; a model name is looked up, never
    // used as a path.
    for (method, path, status, code) in [
        ("POST", "/v1/models/nope/recommend", 404, "unknown_model"),
        (
            "POST",
            "/v1/models/..%2F..%2Fetc/recommend",
            404,
            "unknown_model",
        ),
        ("POST", "/v1/models/../recommend", 404, "unknown_model"),
        ("POST", "/v1/models/shop/explode", 404, "not_found"),
        ("GET", "/v2/anything", 404, "not_found"),
        (
            "DELETE",
            "/v1/models/shop/recommend",
            405,
            "method_not_allowed",
        ),
        ("GET", "/v1/models/shop/similar", 405, "method_not_allowed"),
    ] {
        let r = request(s.addr, method, path, &[], b"{}");
        assert_eq!(
            (r.status, r.json()["error"]["code"].as_str()),
            (status, Some(code)),
            "{method} {path}"
        );
    }
    let r = s.get("/v1/models/shop/recommend?user=user-1&k=abc");
    assert_eq!(r.status, 400);
    let r = s.get("/v1/models/shop/recommend?user=%zz");
    assert_eq!(r.status, 400);
    // Still serving.
    assert_eq!(s.json(p, r#"{"user": "user-1"}"#).0, 200);
}

#[test]
fn oversized_bodies_get_413() {
    let m = model();
    let s = TestServer::start(&[("shop", &m)], |c| c.limits.max_body_bytes = 1000);
    let body = format!(r#"{{"user": "u", "history": ["{}"]}}"#, "x".repeat(2000));
    let r = request(
        s.addr,
        "POST",
        "/v1/models/shop/recommend",
        &[],
        body.as_bytes(),
    );
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (413, Some("body_too_large"))
    );
    // Chunked (no Content-Length): caught while reading.
    let mut c = TcpStream::connect(s.addr).unwrap();
    let head = "POST /v1/models/shop/recommend HTTP/1.1\r\nHost: t\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n";
    c.write_all(head.as_bytes()).unwrap();
    let chunk = format!("{:x}\r\n{}\r\n0\r\n\r\n", body.len(), body);
    c.write_all(chunk.as_bytes()).unwrap();
    let r = read_reply(&mut c).unwrap();
    assert_eq!(r.status, 413);
    s.assert_serving();
}

#[test]
fn slow_clients_time_out_and_overload_is_refused_not_queued() {
    let m = model();
    let s = TestServer::start(&[("shop", &m)], |c| {
        c.limits.header_timeout_ms = 300;
        c.limits.body_timeout_ms = 600;
        c.limits.max_inflight = 1;
    });
    // Headers never finished: the connection is closed.
    let mut slow = TcpStream::connect(s.addr).unwrap();
    slow.write_all(b"POST /v1/models/shop/recommend HTTP/1.1\r\nHost: t\r\n")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 1024];
    let n = slow.read(&mut buf).unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{text}");
    // A body that never arrives holds the only in-flight slot: others get
    // 503 with Retry-After meanwhile, then the slow one gets 408.
    let mut body_slow = TcpStream::connect(s.addr).unwrap();
    body_slow
        .write_all(b"POST /v1/models/shop/recommend HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{\"user\"")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let r = request(
        s.addr,
        "POST",
        "/v1/models/shop/recommend",
        &[],
        br#"{"user": "user-1"}"#,
    );
    assert_eq!((r.status, r.header("retry-after")), (503, Some("1")));
    assert_eq!(r.json()["error"]["code"], "overloaded");
    let r = read_reply(&mut body_slow).unwrap();
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (408, Some("body_timeout"))
    );
    s.assert_serving();
}

#[test]
fn idle_connections_are_bounded_and_shed_beyond_the_limit() {
    let m = model();
    let s = TestServer::start(&[("shop", &m)], |c| c.limits.max_connections = 2000);
    // Thousands of idle keep-alive connections below the limit: service goes on.
    let idle: Vec<TcpStream> = (0..1990)
        .map(|_| TcpStream::connect(s.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    s.assert_serving();
    // Beyond it, new connections are closed at once (and counted).
    let more: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(s.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut closed = 0;
    for mut c in more {
        c.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let _ = c.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
        let mut b = [0u8; 64];
        if matches!(c.read(&mut b), Ok(0) | Err(_)) {
            closed += 1;
        }
    }
    assert!(
        closed >= 10,
        "only {closed} of 20 connections over the limit were shed"
    );
    drop(idle);
    std::thread::sleep(Duration::from_millis(300));
    s.assert_serving();
    assert!(
        s.get("/metrics")
            .text()
            .contains("vitrine_connections_shed_total")
    );
}

#[test]
fn admin_endpoints_need_the_token() {
    let m = model();
    let off = TestServer::start(&[("shop", &m)], |_| {});
    let r = request(off.addr, "POST", "/v1/models/shop/rollback", &[], b"");
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (404, Some("admin_disabled"))
    );
    let on = TestServer::start(&[("shop", &m)], |c| c.admin_token = "s3cret-token".into());
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer s3cret-tokeN"),
        Some("s3cret-token"),
    ] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        let r = request(on.addr, "POST", "/v1/models/shop/rollback", &headers, b"");
        assert_eq!(r.status, 401, "{auth:?}");
    }
    let r = request(
        on.addr,
        "POST",
        "/v1/models/shop/rollback",
        &[("Authorization", "Bearer s3cret-token")],
        b"",
    );
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (409, Some("no_previous_version"))
    );
}
