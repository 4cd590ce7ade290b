//! The table settings a restore loses. AWS documents that a restored table comes back without
//! its TTL, stream, point-in-time recovery and deletion protection settings and without its
//! tags (and without auto scaling policies, alarms and IAM policies). The snapshot job records
//! them at backup time; after a restore, [`apply`] sets them on the new table and says for each
//! one whether it was applied, not applicable, or failed and why.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::{
    PointInTimeRecoverySpecification, StreamSpecification, StreamViewType, Tag,
    TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_sdk_dynamodb::Client as Ddb;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What a table had set, as read at backup time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSettings {
    /// The TTL attribute, when TTL is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_attribute: Option<String>,
    /// The stream's view type (`NEW_AND_OLD_IMAGES`…), when a stream is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    #[serde(default)]
    pub pitr: bool,
    #[serde(default)]
    pub deletion_protection: bool,
    /// The table's own tags (AWS's `aws:` tags, which nobody may set, are left out).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Settings that could not be read at backup time, with the reason: a restore cannot
    /// re-apply them and says so.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unread: Vec<String>,
}

/// Reads `table`'s settings. A setting that cannot be read (a permission, a throttle that
/// outlasted the retries) is listed in `unread`, never taken as off.
pub async fn read(ddb: &Ddb, table: &str) -> Result<TableSettings> {
    let described = ddb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map_err(|e| Error::aws("DescribeTable", format!("table {table}"), e))?
        .table
        .unwrap_or_else(|| aws_sdk_dynamodb::types::TableDescription::builder().build());
    let mut s = TableSettings {
        stream: described
            .stream_specification()
            .filter(|s| s.stream_enabled())
            .and_then(|s| s.stream_view_type())
            .map(|v| v.as_str().to_owned()),
        deletion_protection: described.deletion_protection_enabled().unwrap_or(false),
        ..TableSettings::default()
    };
    match ddb.describe_time_to_live().table_name(table).send().await {
        Ok(out) => {
            s.ttl_attribute = out
                .time_to_live_description
                .filter(|d| {
                    matches!(
                        d.time_to_live_status(),
                        Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
                    )
                })
                .and_then(|d| d.attribute_name);
        }
        Err(e) => s.unread.push(format!(
            "TTL: {}",
            Error::aws("DescribeTimeToLive", format!("table {table}"), e)
        )),
    }
    match ddb
        .describe_continuous_backups()
        .table_name(table)
        .send()
        .await
    {
        Ok(out) => {
            s.pitr = out
                .continuous_backups_description
                .and_then(|d| d.point_in_time_recovery_description)
                .and_then(|p| p.point_in_time_recovery_status)
                .is_some_and(|p| p.as_str() == "ENABLED");
        }
        Err(e) => s.unread.push(format!(
            "PITR: {}",
            Error::aws("DescribeContinuousBackups", format!("table {table}"), e)
        )),
    }
    if let Some(arn) = described.table_arn() {
        let mut next: Option<String> = None;
        loop {
            match ddb
                .list_tags_of_resource()
                .resource_arn(arn)
                .set_next_token(next.take())
                .send()
                .await
            {
                Ok(out) => {
                    for t in out.tags() {
                        if !t.key().starts_with("aws:") {
                            s.tags.insert(t.key().to_owned(), t.value().to_owned());
                        }
                    }
                    match out.next_token {
                        Some(t) => next = Some(t),
                        None => break,
                    }
                }
                Err(e) => {
                    s.tags.clear();
                    s.unread.push(format!(
                        "tags: {}",
                        Error::aws("ListTagsOfResource", format!("table {table}"), e)
                    ));
                    break;
                }
            }
        }
    }
    Ok(s)
}

/// What became of one setting on the restored table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Applied {
        detail: String,
    },
    /// The source did not have it (or a restore keeps it by itself).
    NotApplicable {
        detail: String,
    },
    Failed {
        detail: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Applied {
    pub setting: &'static str,
    #[serde(flatten)]
    pub outcome: Outcome,
}

impl Applied {
    pub fn line(&self) -> String {
        match &self.outcome {
            Outcome::Applied { detail } => format!("{}: applied ({detail})", self.setting),
            Outcome::NotApplicable { detail } => {
                format!("{}: not applicable ({detail})", self.setting)
            }
            Outcome::Failed { detail } => format!("{}: FAILED: {detail}", self.setting),
        }
    }

    pub fn failed(&self) -> bool {
        matches!(self.outcome, Outcome::Failed { .. })
    }
}

/// What a restore cannot carry over, for the operator to look at: the alarms and IAM policies
/// that name the old table, and the settings this version does not record.
pub const NOT_CARRIED: &str = "not changed by Backstop: CloudWatch alarms and IAM policies that name the source table, auto scaling policies, contributor insights and a resource policy; set them on the new table by hand";

/// Sets `settings` on the restored table `table`, one at a time, deletion protection last and
/// only when everything before it was applied and `data_ok` (the restored data matched the
/// source's record): a table that is wrong or half set up stays deletable. Never fails as a
/// whole: each setting's outcome is returned.
pub async fn apply(
    ddb: &Ddb,
    table: &str,
    settings: &TableSettings,
    data_ok: bool,
) -> Vec<Applied> {
    let mut out = Vec::new();
    // What the table has already (a restore carried on after an invocation that applied part
    // of this died): a stream or TTL already on as recorded is reported applied, not set again
    // (AWS refuses to enable either twice).
    let (arn, stream_now) = match ddb.describe_table().table_name(table).send().await {
        Ok(d) => d
            .table
            .map(|t| (t.table_arn, t.stream_specification))
            .unwrap_or_default(),
        Err(e) => {
            let detail = Error::aws("DescribeTable", format!("table {table}"), e).to_string();
            for setting in ["TTL", "stream", "PITR", "tags", "deletion protection"] {
                out.push(Applied {
                    setting,
                    outcome: Outcome::Failed {
                        detail: detail.clone(),
                    },
                });
            }
            return out;
        }
    };
    let result = |r: std::result::Result<String, String>| match r {
        Ok(detail) => Outcome::Applied { detail },
        Err(detail) => Outcome::Failed { detail },
    };
    let na = |detail: &str| Outcome::NotApplicable {
        detail: detail.to_owned(),
    };
    let unread = |what: &str| {
        settings
            .unread
            .iter()
            .find(|u| u.starts_with(what))
            .map(|u| Outcome::Failed {
                detail: format!("not recorded at backup time: {u}"),
            })
    };

    out.push(Applied {
        setting: "TTL",
        outcome: match (&settings.ttl_attribute, unread("TTL:")) {
            (_, Some(failed)) => failed,
            (None, None) => na("TTL was off"),
            (Some(attr), None) => result(
                async {
                    let now = ddb
                        .describe_time_to_live()
                        .table_name(table)
                        .send()
                        .await
                        .ok()
                        .and_then(|o| o.time_to_live_description);
                    if now.is_some_and(|d| {
                        d.attribute_name.as_deref() == Some(attr.as_str())
                            && matches!(
                                d.time_to_live_status.as_ref().map(|s| s.as_str()),
                                Some("ENABLED") | Some("ENABLING")
                            )
                    }) {
                        return Ok(format!("attribute {attr} (already on)"));
                    }
                    let spec = TimeToLiveSpecification::builder()
                        .enabled(true)
                        .attribute_name(attr)
                        .build()
                        .map_err(|e| e.to_string())?;
                    ddb.update_time_to_live()
                        .table_name(table)
                        .time_to_live_specification(spec)
                        .send()
                        .await
                        .map_err(|e| {
                            Error::aws("UpdateTimeToLive", format!("table {table}"), e).to_string()
                        })?;
                    Ok(format!("attribute {attr}"))
                }
                .await,
            ),
        },
    });

    out.push(Applied {
        setting: "stream",
        outcome: match &settings.stream {
            None => na("no stream"),
            Some(view) => result(
                async {
                    if stream_now.as_ref().is_some_and(|s| {
                        s.stream_enabled
                            && s.stream_view_type.as_ref().map(|v| v.as_str())
                                == Some(view.as_str())
                    }) {
                        return Ok(format!("{view} (already on)"));
                    }
                    let spec = StreamSpecification::builder()
                        .stream_enabled(true)
                        .stream_view_type(StreamViewType::from(view.as_str()))
                        .build()
                        .map_err(|e| e.to_string())?;
                    ddb.update_table()
                        .table_name(table)
                        .stream_specification(spec)
                        .send()
                        .await
                        .map_err(|e| {
                            Error::aws("UpdateTable (stream)", format!("table {table}"), e)
                                .to_string()
                        })?;
                    Ok(format!(
                        "{view}; a new stream ARN: consumers must be pointed at it"
                    ))
                }
                .await,
            ),
        },
    });

    out.push(Applied {
        setting: "PITR",
        outcome: match (settings.pitr, unread("PITR:")) {
            (_, Some(failed)) => failed,
            (false, None) => na("PITR was off"),
            (true, None) => result(
                async {
                    let spec = PointInTimeRecoverySpecification::builder()
                        .point_in_time_recovery_enabled(true)
                        .build()
                        .map_err(|e| e.to_string())?;
                    ddb.update_continuous_backups()
                        .table_name(table)
                        .point_in_time_recovery_specification(spec)
                        .send()
                        .await
                        .map_err(|e| {
                            Error::aws("UpdateContinuousBackups", format!("table {table}"), e)
                                .to_string()
                        })?;
                    Ok("on".to_owned())
                }
                .await,
            ),
        },
    });

    out.push(Applied {
        setting: "tags",
        outcome: match (settings.tags.is_empty(), unread("tags:"), &arn) {
            (_, Some(failed), _) => failed,
            (true, None, _) => na("no tags"),
            (false, None, None) => Outcome::Failed {
                detail: format!("DescribeTable on table {table} gave no ARN to tag"),
            },
            (false, None, Some(arn)) => result(
                async {
                    let tags = settings
                        .tags
                        .iter()
                        .map(|(k, v)| Tag::builder().key(k).value(v).build())
                        .collect::<std::result::Result<Vec<_>, _>>()
                        .map_err(|e| e.to_string())?;
                    ddb.tag_resource()
                        .resource_arn(arn)
                        .set_tags(Some(tags))
                        .send()
                        .await
                        .map_err(|e| {
                            Error::aws("TagResource", format!("table {table}"), e).to_string()
                        })?;
                    Ok(settings.tags.keys().cloned().collect::<Vec<_>>().join(", "))
                }
                .await,
            ),
        },
    });

    let earlier_failed = out.iter().any(Applied::failed);
    out.push(Applied {
        setting: "deletion protection",
        outcome: if !settings.deletion_protection {
            na("it was off")
        } else if earlier_failed || !data_ok {
            Outcome::Failed {
                detail: format!(
                    "left off on purpose: {}, so table {table} stays deletable; turn it on by hand once the table is right",
                    if data_ok {
                        "a setting above failed"
                    } else {
                        "the restored data differs from the source's record"
                    }
                ),
            }
        } else {
            result(
                async {
                    ddb.update_table()
                        .table_name(table)
                        .deletion_protection_enabled(true)
                        .send()
                        .await
                        .map_err(|e| {
                            Error::aws(
                                "UpdateTable (deletion protection)",
                                format!("table {table}"),
                                e,
                            )
                            .to_string()
                        })?;
                    Ok("on".to_owned())
                }
                .await,
            )
        },
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_through_the_catalog_json_and_old_records_read_as_empty() {
        let s = TableSettings {
            ttl_attribute: Some("expires".into()),
            stream: Some("NEW_AND_OLD_IMAGES".into()),
            pitr: true,
            deletion_protection: true,
            tags: BTreeMap::from([("team".into(), "sales".into())]),
            unread: vec![],
        };
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<TableSettings>(&text).unwrap(), s);
        assert_eq!(
            serde_json::from_str::<TableSettings>("{}").unwrap(),
            TableSettings::default()
        );
    }

    #[test]
    fn each_outcome_reads_as_a_line() {
        let a = Applied {
            setting: "TTL",
            outcome: Outcome::Failed {
                detail: "denied".into(),
            },
        };
        assert!(a.failed());
        assert_eq!(a.line(), "TTL: FAILED: denied");
    }
}
