//! vitrine-train's library: algorithms, protocols, reports. The binary
//! (`main.rs`) only parses arguments and wires these together.

pub mod algo;
pub mod protocol;
pub mod ranker;
pub mod search;
pub mod sparse;
