//! End-to-end tests: one binary (ripgrep's `tests/tests.rs` layout) driving the real `leakhound`
//! binary, real Go programs' captures, a real S3-compatible server and a real Kubernetes API
//! server where the modules below need them.

mod support;

mod actuate;
mod agent;
mod alerts_out;
mod analyze;
mod backfill;
mod chromium;
mod cli;
mod cluster;
mod compact;
mod discovery;
mod golden;
mod goprog;
mod grafana;
mod helm;
mod hostile;
mod image;
mod ingest;
mod inspect;
mod k8s;
mod lives;
mod memory;
mod pipeline;
mod prometheus;
mod push;
mod realworld;
mod report;
mod rules;
mod s3;
mod serve;
mod sql;
mod store_trust;
