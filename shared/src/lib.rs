//! Backstop's library: everything that is not an entry point.
//!
//! Pure parts (settings, payloads, names, reports, metric data) do no I/O. Parts that talk to AWS
//! take the concrete SDK clients from [`aws::Clients`], built once per process.

pub mod anomaly;
pub mod aws;
pub mod backups;
pub mod bucket;
pub mod catalog;
pub mod chat;
pub mod db;
pub mod ddbjson;
pub mod diff;
pub mod drill;
pub mod error;
pub mod event;
pub mod export;
pub mod fingerprint;
pub mod freshness;
pub mod jobs;
pub mod logging;
pub mod notify;
pub mod period;
pub mod report;
pub mod restore;
pub mod retention;
pub mod runtime;
pub mod selection;
pub mod settings;
pub mod status;
pub mod summary;
pub mod table_settings;
pub mod wire;

#[cfg(feature = "lambda")]
pub mod lambda;

pub use error::{Error, Result};
