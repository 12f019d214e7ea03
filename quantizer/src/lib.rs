//! vitrine-quantize's library. The binary (`main.rs`) parses arguments into
//! a [`pipeline::Job`]; [`pipeline::run`] does the work in a fixed order:
//! load the source → prune the catalogue → reduce dimensions or distil →
//! store as f32/f16/int8 → compare with the source → write or publish.

pub mod catalog;
pub mod compare;
pub mod distill;
pub mod import;
pub mod lowrank;
pub mod pipeline;
