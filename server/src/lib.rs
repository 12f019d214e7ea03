//! vitrine-server's library: configuration, the model registry, the served
//! model's operations, the API and the HTTP transport. `main.rs` wires them.

pub mod api;
pub mod batch;
pub mod config;
pub mod http;
pub mod lifecycle;
pub mod metrics;
pub mod model;
pub mod ranker;
pub mod registry;
