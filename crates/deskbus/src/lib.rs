//! deskbus: one self-hosted service that connects help desks, contact centres
//! and message buses. See ARCHITECTURE.md for the map.
//!
//! The binary's `main` only parses arguments and maps errors to exit codes;
//! everything it runs lives here so tests and benchmarks can reach it.

pub mod admin;
#[cfg(feature = "amqp")]
pub mod amqp;
pub mod cli;
pub mod config;
pub mod internal_events;
pub mod runtime;
pub mod sources;
pub mod streams;
pub(crate) mod url;
pub mod use_cases;
