//! Operator comforts (issue 18), against real MySQL 9.7 and the real
//! `causeway` binary: logs without escape codes when not on a terminal,
//! backend accounts on an authentication plugin causeway cannot speak are
//! refused by name, the monitor's split-brain checks (writable replica,
//! replica of a foreign source), the JSON admin API and the HTTP server's
//! bounds under hostile clients, the Grafana dashboard's metric names, and
//! the Kubernetes manifests' structure and agreement with the config.

#[path = "../support/mod.rs"]
mod support;

mod admin_api;
mod admin_hostile;
mod auth_plugin;
mod dashboard;
mod http;
mod kubernetes;
mod logs;
mod safety;
