//! One lock per source bucket, in the catalog (`pk` = `BUCKET#<bucket>`, `sk` = `LOCK`): a
//! backup and a prune of the same bucket never overlap, because a prune that sweeps while a
//! backup decides "already stored" could delete an object the new manifest names.
//!
//! The lock is a lease: taken when absent, run out, or already ours; renewed by its holder,
//! conditionally on still holding it, before every step that relies on it; released at the end.
//! A holder that finds it lost stops.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use jiff::Timestamp;

use crate::catalog::Catalog;
use crate::error::{Error, Result};

/// Who holds a bucket's lock, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub holder: String,
    /// What it is doing (`backup 2026-12-01T02:00:00Z`, `prune`).
    pub doing: String,
    pub until: Timestamp,
}

fn key(source: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (
            "pk".to_owned(),
            AttributeValue::S(format!("BUCKET#{source}")),
        ),
        ("sk".to_owned(), AttributeValue::S("LOCK".into())),
    ])
}

fn is_condition_failed<E>(e: &aws_sdk_dynamodb::error::SdkError<E>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(|s| s.code())
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}

/// Takes the lock of `source` for `holder` until `until`. `Ok(None)`: taken (or already ours);
/// `Ok(Some(other))`: another holder's lease is still running.
pub async fn acquire(
    catalog: &Catalog,
    source: &str,
    holder: &str,
    doing: &str,
    now: Timestamp,
    until: Timestamp,
) -> Result<Option<Holder>> {
    let mut item = key(source);
    item.insert("kind".into(), AttributeValue::S("bucket_lock".into()));
    item.insert("holder".into(), AttributeValue::S(holder.into()));
    item.insert("doing".into(), AttributeValue::S(doing.into()));
    item.insert(
        "lease_until".into(),
        AttributeValue::N(until.as_second().to_string()),
    );
    let res = catalog
        .client()
        .put_item()
        .table_name(catalog.table_name())
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk) OR lease_until < :now OR holder = :me")
        .expression_attribute_values(":now", AttributeValue::N(now.as_second().to_string()))
        .expression_attribute_values(":me", AttributeValue::S(holder.into()))
        .send()
        .await;
    match res {
        Ok(_) => Ok(None),
        Err(e) if is_condition_failed(&e) => match current(catalog, source).await? {
            Some(h) => Ok(Some(h)),
            // Released between the two calls: the caller may simply try again.
            None => Ok(Some(Holder {
                holder: "unknown".into(),
                doing: "released just now".into(),
                until: now,
            })),
        },
        Err(e) => {
            // The put may have taken effect with its answer lost: give back what may be ours,
            // so that the bucket is not locked for a whole lease by a holder that gave up.
            let _ = release(catalog, source, holder).await;
            Err(Error::aws(
                "PutItem",
                format!("catalog {} (lock of bucket {source})", catalog.table_name()),
                e,
            ))
        }
    }
}

/// Extends our lease to `until`. `Ok(false)`: the lock is no longer ours (it ran out and another
/// holder took it): stop.
pub async fn renew(
    catalog: &Catalog,
    source: &str,
    holder: &str,
    until: Timestamp,
) -> Result<bool> {
    let res = catalog
        .client()
        .update_item()
        .table_name(catalog.table_name())
        .set_key(Some(key(source)))
        .update_expression("SET lease_until = :until")
        .condition_expression("holder = :me")
        .expression_attribute_values(":until", AttributeValue::N(until.as_second().to_string()))
        .expression_attribute_values(":me", AttributeValue::S(holder.into()))
        .send()
        .await;
    match res {
        Ok(_) => Ok(true),
        Err(e) if is_condition_failed(&e) => Ok(false),
        Err(e) => Err(Error::aws(
            "UpdateItem",
            format!("catalog {} (lock of bucket {source})", catalog.table_name()),
            e,
        )),
    }
}

/// Gives the lock up, if it is still ours. Safe to repeat.
pub async fn release(catalog: &Catalog, source: &str, holder: &str) -> Result<()> {
    let res = catalog
        .client()
        .delete_item()
        .table_name(catalog.table_name())
        .set_key(Some(key(source)))
        .condition_expression("holder = :me")
        .expression_attribute_values(":me", AttributeValue::S(holder.into()))
        .send()
        .await;
    match res {
        Ok(_) => Ok(()),
        Err(e) if is_condition_failed(&e) => Ok(()),
        Err(e) => Err(Error::aws(
            "DeleteItem",
            format!("catalog {} (lock of bucket {source})", catalog.table_name()),
            e,
        )),
    }
}

/// The lock's holder, if any (it may have run out).
pub async fn current(catalog: &Catalog, source: &str) -> Result<Option<Holder>> {
    let out = catalog
        .client()
        .get_item()
        .table_name(catalog.table_name())
        .set_key(Some(key(source)))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| {
            Error::aws(
                "GetItem",
                format!("catalog {} (lock of bucket {source})", catalog.table_name()),
                e,
            )
        })?;
    let Some(item) = out.item else {
        return Ok(None);
    };
    let s = |k: &str| match item.get(k) {
        Some(AttributeValue::S(v)) => v.clone(),
        _ => String::new(),
    };
    let until = match item.get("lease_until") {
        Some(AttributeValue::N(v)) => v.parse::<i64>().ok(),
        _ => None,
    }
    .and_then(|s| Timestamp::from_second(s).ok())
    .unwrap_or(Timestamp::UNIX_EPOCH);
    Ok(Some(Holder {
        holder: s("holder"),
        doing: s("doing"),
        until,
    }))
}
