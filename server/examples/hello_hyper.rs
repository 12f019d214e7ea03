//! The HTTP ceiling for docs/BENCHMARKS.md: the smallest hyper server on the
//! same runtime setup as vitrine-server (multi-thread tokio, one worker per
//! core it may use, hyper-util's auto builder, keep-alive), answering
//! `Hello, World!` to everything.
//!
//!     cargo run --release -p vitrine-server --example hello_hyper -- 127.0.0.1:18099

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18099".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("hello_hyper listening on {addr}");
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|_req| async {
                Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(
                    b"Hello, World!",
                ))))
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
