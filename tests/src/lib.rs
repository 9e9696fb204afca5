//! Shared helpers for the test suites: the in-memory simulator (fake clock, fake connections,
//! fake user agents) and loaders for the captured traces under `../shared/traces/`.
pub mod daemon;
pub mod sim;
pub mod traces;
