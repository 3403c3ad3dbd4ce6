//! Sportello's web service: the citizen portal, its login, its sessions and its workers.
//! One module per capability (`auth`, `citizen`, `applications`, `pages`, `jobs`), beside the shared
//! pieces (`config`, `db`, `web`, `telemetry`, `clock`, `domain`). `server` puts them together.

pub mod alerts;
pub mod applications;
pub mod appointments;
pub mod auth;
pub mod citizen;
pub mod clock;
pub mod config;
pub mod csi;
pub mod db;
pub mod delegations;
pub mod documents;
pub mod domain;
pub mod jobs;
pub mod pages;
pub mod pdf;
pub mod server;
pub mod staff;
pub mod telemetry;
pub mod triage;
pub mod web;
