//! Jobs. Each job selects its targets, does its work per target, then hands the outcomes to
//! [`RunInProgress::finish`], which builds the `RunReport` and publishes it the same way for
//! every job: SNS message, CloudWatch metrics, catalog run record.

use std::time::Instant;

use futures::{stream, StreamExt};
use jiff::Timestamp;
use tracing::{error, info, info_span, warn, Instrument};

use crate::aws::{Clients, TlsRoots};
use crate::catalog::Catalog;
use crate::event::JobRequest;
use crate::notify;
use crate::report::{run_status, Delivery, DeliveryState, RunReport, TargetReport, Totals};
use crate::selection::{self, Excluded};
use crate::settings::{JobKind, Settings};

pub mod bucket;
pub mod database;
pub mod export;
pub mod retention;
pub mod snapshot;
pub mod validate;

/// Everything an invocation needs, built once per process.
#[derive(Debug, Clone)]
pub struct Context {
    pub clients: Clients,
    pub env: crate::settings::Environment,
}

impl Context {
    /// Parses a payload and resolves the settings of `job` it overrides: the first step of every
    /// handler. `deadline` is the invocation's (Lambda's context), `None` elsewhere.
    pub fn prepare(
        &self,
        job: JobKind,
        payload: &serde_json::Value,
        deadline: Option<Timestamp>,
    ) -> crate::Result<(JobRequest, Settings)> {
        let mut request = JobRequest::from_payload(payload, Timestamp::now())?;
        request.deadline = deadline;
        let settings = Settings::resolve(job, &self.env, &request)?;
        Ok((request, settings))
    }

    /// SDK clients from the AWS environment and settings from `BACKSTOP_*`, read once. The
    /// clients trust `BACKSTOP_TLS_ROOTS` (default: Amazon's roots, or the system's store in the
    /// regions where that is not known to suffice, see [`TlsRoots::default_for_region`]); a
    /// value that cannot be read leaves the default, and [`Context::check`] fails every
    /// invocation with the reason.
    pub async fn from_env() -> Context {
        let env = crate::settings::Environment::from_process();
        let default = TlsRoots::default_for_region(crate::aws::env_region().as_deref());
        let roots = env.tls_roots(default).unwrap_or(default);
        let clients = Clients::from_env(roots).await;
        // Provisioned concurrency runs init ahead of any request: build every client there, so
        // that no request pays for one.
        if std::env::var("AWS_LAMBDA_INITIALIZATION_TYPE").as_deref()
            == Ok("provisioned-concurrency")
        {
            clients.build_all();
        }
        Context { clients, env }
    }

    /// The settings every function reads before its own: fails on a `BACKSTOP_TLS_ROOTS` that
    /// cannot be read.
    pub fn check(&self) -> crate::Result<()> {
        self.env.tls_roots(TlsRoots::Amazon).map(|_| ())
    }
}

/// Runs `job` for resolved settings: the one path the functions, the CLI and the tests share
/// once a request is parsed.
pub async fn run(
    job: JobKind,
    clients: &Clients,
    settings: &Settings,
    request: &JobRequest,
) -> RunReport {
    // Boxed: each job's future is deep, and a binary that nests both would pass the
    // compiler's type-depth limit.
    match job {
        JobKind::Snapshot => Box::pin(snapshot::run(clients, settings, request)).await,
        JobKind::Export => Box::pin(export::run(clients, settings, request)).await,
        JobKind::Retention => Box::pin(retention::run(clients, settings, request)).await,
        JobKind::Validate => Box::pin(validate::run(clients, settings, request)).await,
        JobKind::Bucket => Box::pin(bucket::run(clients, settings, request)).await,
    }
}

/// The handler's body for any job: parse the payload, resolve the job's settings, run, and fail
/// the invocation (after the report is published) when anything is left undone, so that
/// Lambda's retry and failure destination see it.
pub async fn handle(
    job: JobKind,
    ctx: &Context,
    payload: serde_json::Value,
    deadline: Option<Timestamp>,
) -> crate::Result<RunReport> {
    ctx.check()?;
    let (request, settings) = ctx.prepare(job, &payload, deadline)?;
    into_result(run(job, &ctx.clients, &settings, &request).await)
}

/// Lambda's invocation deadline (milliseconds since the epoch, from the context) as a time.
pub fn deadline_of(deadline_ms: u64) -> Option<Timestamp> {
    i64::try_from(deadline_ms)
        .ok()
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
}

/// The last step of every handler: a run that left anything undone becomes an error (after its
/// report was published), so that Lambda's retry and failure destination see it.
pub fn into_result(report: RunReport) -> crate::Result<RunReport> {
    let report = report.fit_response();
    if report.needs_retry() {
        return Err(crate::Error::RunFailed {
            job: report.job.to_string(),
            run_id: report.run_id.clone(),
            slot: report.slot.to_string(),
            summary: report.failure_summary(),
        });
    }
    Ok(report)
}

/// A target whose selection could not be decided: it fails alone.
pub(crate) fn unreadable_target(u: selection::Unreadable) -> TargetReport {
    TargetReport {
        table: u.table,
        outcome: crate::report::Outcome::Failed {
            operation: u.operation,
            error: u.error,
            retryable: u.retryable,
        },
        pitr: None,
        duration_ms: 0,
        warnings: vec![],
        decisions: vec![],
        export: None,
        export_retention: None,
        validation: None,
        bucket: None,
        replica: None,
        size_check: None,
    }
}

/// The run's selection in words: its tables (or buckets), and its databases when any.
fn describe_selection(job: JobKind, settings: &Settings) -> String {
    let noun = match job {
        JobKind::Bucket => "buckets",
        JobKind::Snapshot | JobKind::Export | JobKind::Retention | JobKind::Validate => "tables",
    };
    let mut parts = Vec::new();
    if !matches!(&settings.selection, crate::selection::TableSelection::Names(n) if n.is_empty())
        || !settings.databases.any()
    {
        parts.push(settings.selection.describe_as(noun));
    }
    for kind in crate::db::DbKind::ALL {
        if let Some(sel) = settings.databases.selection(kind) {
            parts.push(sel.describe_as(kind.plural()));
        }
    }
    parts.join("; ")
}

/// A run between its start and its report.
pub(crate) struct RunInProgress {
    pub run_id: String,
    pub job: JobKind,
    pub request: JobRequest,
    pub selection: String,
    pub started_at: Timestamp,
    pub started: Instant,
    pub targets: Vec<TargetReport>,
    pub excluded: Vec<Excluded>,
    pub errors: Vec<String>,
}

impl RunInProgress {
    pub fn start(job: JobKind, settings: &Settings, request: &JobRequest) -> Self {
        RunInProgress {
            run_id: uuid::Uuid::new_v4().to_string(),
            job,
            request: request.clone(),
            selection: describe_selection(job, settings),
            started_at: Timestamp::now(),
            started: Instant::now(),
            targets: Vec::new(),
            excluded: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// Selects the tables and runs `per_table` on each, at most `settings.concurrency` at once,
    /// each in a span naming its table. A failed selection is a run-level error.
    pub async fn over_selected_tables<F, Fut>(
        &mut self,
        clients: &Clients,
        settings: &Settings,
        per_table: F,
    ) where
        F: FnMut(String) -> Fut,
        Fut: std::future::Future<Output = TargetReport>,
    {
        let mut per_table = per_table;
        match selection::resolve(&clients.dynamodb, settings).await {
            Ok(selected) => {
                info!(
                    tables = selected.tables.len(),
                    excluded = selected.excluded.len(),
                    "selected"
                );
                self.excluded = selected.excluded;
                self.targets = stream::iter(selected.tables)
                    .map(|table| {
                        let span = info_span!("target", table = %table);
                        per_table(table).instrument(span)
                    })
                    .buffered(settings.concurrency)
                    .collect()
                    .await;
                // Tables whose selection could not be decided fail alone.
                for u in selected.unreadable {
                    warn!(table = %u.table, error = %u.error, "selection unreadable");
                    self.targets.push(unreadable_target(u));
                }
            }
            Err(e) => {
                warn!(error = %e, "selection failed");
                self.errors.push(format!("selecting tables: {e}"));
            }
        }
    }

    /// Selects the database targets (RDS instances) and runs `per_target` on each, like
    /// [`RunInProgress::over_selected_tables`]; their reports follow the tables'. Nothing when
    /// no database is selected.
    pub async fn over_selected_databases<F, Fut>(
        &mut self,
        clients: &Clients,
        settings: &Settings,
        per_target: F,
    ) where
        F: FnMut(crate::db::DbTarget) -> Fut,
        Fut: std::future::Future<Output = TargetReport>,
    {
        let mut per_target = per_target;
        let mut targets = Vec::new();
        for kind in crate::db::DbKind::ALL {
            let Some(selection) = settings.databases.selection(kind) else {
                continue;
            };
            match crate::db::api::resolve(
                &clients.db(),
                kind,
                selection,
                &settings.drill_table_prefix,
            )
            .await
            {
                Ok((ids, excluded)) => {
                    info!(
                        kind = kind.plural(),
                        selected = ids.len(),
                        excluded = excluded.len(),
                        "selected databases"
                    );
                    self.excluded.extend(excluded);
                    targets.extend(ids.into_iter().map(|id| crate::db::DbTarget { kind, id }));
                }
                Err(e) => {
                    warn!(error = %e, "database selection failed");
                    self.errors
                        .push(format!("selecting {}: {e}", kind.plural()));
                }
            }
        }
        let reports: Vec<TargetReport> = stream::iter(targets)
            .map(|target| {
                let span = info_span!("target", database = %target.name());
                per_target(target).instrument(span)
            })
            .buffered(settings.concurrency)
            .collect()
            .await;
        self.targets.extend(reports);
    }

    /// Builds the report and publishes it. A dry run publishes nothing.
    pub async fn finish(
        self,
        clients: &Clients,
        settings: &Settings,
        catalog: &Catalog,
    ) -> RunReport {
        let mut warnings = Vec::new();
        let mut targets = self.targets;
        let long = std::time::Duration::from_secs(crate::anomaly::LONG_RUN_SECS);
        for t in &mut targets {
            if std::time::Duration::from_millis(t.duration_ms) > long {
                t.warnings.push(format!(
                    "took {:.1} h, over the hour a run of one target should take",
                    t.duration_ms as f64 / 3_600_000.0
                ));
            }
        }
        let elapsed = self.started.elapsed();
        if elapsed > long {
            warnings.push(format!(
                "the run took {:.1} h, over an hour",
                elapsed.as_secs_f64() / 3600.0
            ));
        }
        let totals = Totals::from_targets(&targets);
        let mut report = RunReport {
            run_id: self.run_id,
            job: self.job,
            slot: self.request.slot,
            trigger: self.request.trigger,
            dry_run: self.request.dry_run,
            status: run_status(&totals, &self.errors),
            started_at: self.started_at,
            finished_at: Timestamp::now(),
            duration_ms: elapsed.as_millis() as u64,
            selection: self.selection,
            targets,
            excluded: self.excluded,
            totals,
            errors: self.errors,
            delivery: Delivery::default(),
            truncated: None,
            warnings,
        };
        if report.dry_run {
            let skipped = || DeliveryState::Skipped {
                reason: "dry run".into(),
            };
            report.delivery = Delivery {
                sns: skipped(),
                metrics: skipped(),
                catalog: skipped(),
            };
            return report;
        }

        // Metrics, then SNS (which can say whether the metrics landed), then the run record,
        // last so that it keeps every delivery failure: a failed Publish or PutMetricData never
        // costs the run its record.
        report.delivery.metrics = match notify::publish_metrics(
            &clients.cloudwatch,
            &settings.metrics_namespace,
            &report,
        )
        .await
        {
            Ok(count) => DeliveryState::Sent {
                id: Some(format!("{count} data points")),
            },
            Err(e) => {
                report.errors.push(format!("publishing metrics: {e}"));
                DeliveryState::Failed {
                    error: e.to_string(),
                }
            }
        };
        report.delivery.sns = match &settings.topic_arn {
            None => DeliveryState::Skipped {
                reason: "no topic configured (BACKSTOP_TOPIC_ARN)".into(),
            },
            Some(topic) => match notify::publish_sns(&clients.sns, topic, &report).await {
                Ok(id) => DeliveryState::Sent { id: Some(id) },
                Err(e) => {
                    report.errors.push(format!("publishing to SNS: {e}"));
                    DeliveryState::Failed {
                        error: e.to_string(),
                    }
                }
            },
        };
        report.delivery.catalog = match catalog.record_run(&report).await {
            Ok(()) => DeliveryState::Sent { id: None },
            Err(e) => {
                report
                    .errors
                    .push(format!("publishing catalog run record: {e}"));
                DeliveryState::Failed {
                    error: e.to_string(),
                }
            }
        };
        if report.errors.is_empty() {
            info!(status = ?report.status, created = report.totals.created, failed = report.totals.failed, "run finished");
        } else {
            error!(status = ?report.status, errors = ?report.errors, "run finished with errors");
        }
        report
    }
}
