//! The load generator against a real vitrine-server (in-process, ephemeral
//! port): closed and open loop, a request mix, JSON output.

use std::process::Command;
use std::sync::Arc;
use vitrine_core::synthetic::{SyntheticSpec, embedding_model};
use vitrine_server::api::AppState;
use vitrine_server::config::Config;
use vitrine_server::registry::Registry;

fn start_server(
    models: &std::path::Path,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let config = Config {
        models_dir: models.to_path_buf(),
        ..Config::default()
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            let registry = Registry::load(&config);
            let state = Arc::new(AppState { config, registry });
            vitrine_server::http::serve(listener, state, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
    });
    (addr_rx.recv().unwrap(), tx)
}

fn loadtest(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_vitrine-loadtest"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn closed_and_open_loop_against_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("demo/1/model.vtr");
    std::fs::create_dir_all(model.parent().unwrap()).unwrap();
    embedding_model(&SyntheticSpec::demo())
        .write(&model)
        .unwrap();
    let (addr, _stop) = start_server(dir.path());
    let url = format!("http://{addr}");
    let m = model.to_str().unwrap();
    // Four connections (or streams), one second, every request kind.
    let mixed = |extra: &[&str]| {
        let mut args = vec![
            "--url",
            &url,
            "--ids-from",
            m,
            "--connections",
            "4",
            "--duration",
            "1s",
            "--warmup",
            "200ms",
            "--mix",
            "recommend=6,similar=2,score=1,batch=1",
            "--json",
            "--quiet",
        ];
        args.extend_from_slice(extra);
        loadtest(&args)
    };
    let closed = mixed(&["--zipf", "1.1"]);
    assert_eq!(closed["mode"], "closed");
    assert!(closed["requests"].as_u64().unwrap() > 100, "{closed}");
    assert_eq!(closed["errors"], 0);
    assert_eq!(
        closed["status"]["200"], closed["requests"],
        "every request answered 200: {closed}"
    );
    for kind in ["recommend", "similar", "score", "batch"] {
        assert!(
            closed["by_kind"][kind].as_u64().unwrap() > 0,
            "{kind} never sent"
        );
    }
    let l = &closed["latency_us"];
    assert!(l["p50"].as_f64() <= l["p99"].as_f64() && l["p99"].as_f64() <= l["max"].as_f64());
    // HTTP/2 (h2c): four streams on one connection, the same mix.
    let h2 = mixed(&["--http2"]);
    assert_eq!(h2["protocol"], "h2");
    assert!(h2["requests"].as_u64().unwrap() > 100, "{h2}");
    assert_eq!(h2["errors"], 0);
    assert_eq!(h2["status"]["200"], h2["requests"], "{h2}");
    // Open loop: the offered rate is what was asked (±10%), well below capacity.
    let open = loadtest(&[
        "--url",
        &url,
        "--ids-from",
        m,
        "--connections",
        "4",
        "--rate",
        "400",
        "--duration",
        "1s",
        "--warmup",
        "200ms",
        "--json",
        "--quiet",
    ]);
    assert_eq!(open["mode"], "open");
    let tp = open["throughput"].as_f64().unwrap();
    assert!(
        (360.0..=440.0).contains(&tp),
        "open loop at 400 req/s measured {tp}"
    );
    // Bad arguments are errors, not hangs.
    let out = Command::new(env!("CARGO_BIN_EXE_vitrine-loadtest"))
        .args(["--url", &url])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ids-from"));
}
