//! The integration tests, one binary: each file is a module named after its domain, so a test's
//! name says where it lives (`lifecycle::...`, `pools::...`) and filters select by module
//! (`zfs::` and `desktop::` run in their own make targets). One crate instead of one per file:
//! the shared helpers and the library's generics are compiled and linked once, and the test
//! threads stay busy across domains instead of waiting for the slowest test of each binary.
//! The driver conformance suite (`tests/conformance`) stays its own crate: its macro-generated
//! modules per driver would otherwise share names with these.

#[path = "../common/mod.rs"]
mod common;

mod desktop;
mod golden;
mod hardening;
mod homes;
mod host;
mod identity;
mod lifecycle;
mod observability;
mod pools;
mod probes;
mod qcow2_compat;
mod qmp;
mod result_codes;
mod schema;
mod security;
mod sessions;
mod zfs;
mod zfs_sys_abi;
mod zones;
