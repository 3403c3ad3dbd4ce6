//! The one integration-test binary: real HTTP on a random port, a fresh database per test, on SQLite
//! or PostgreSQL (`TEST_DB`), and a real browser for the pages.

// Tests assert by panicking: the workspace's no-unwrap rule is for request paths.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../bench/common.rs"]
mod bench_common;
#[path = "../bench/scans.rs"]
mod scans;
mod support;

mod alerts;
mod applications;
mod appointments;
mod audit;
mod broker;
mod browser;
mod cli;
mod csi;
mod delegations;
mod documents;
mod intake;
mod interop;
mod jobs;
mod login;
mod pages;
mod profile;
mod scaleout;
mod security;
mod site;
mod staff;
mod triage;
