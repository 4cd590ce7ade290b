//! Scan pages as DynamoDB sent them. A logical export writes DynamoDB JSON, which is what a
//! Scan answer already holds: rather than have the SDK parse every item into `AttributeValue`s
//! and then write each one back out (most of an export's CPU time), the export's Scan calls run
//! inside [`capture`], where the DynamoDB client's HTTP layer keeps a successful answer's body
//! for the caller and hands the SDK an empty one. The export then writes each item's own text
//! and fingerprints it from that text ([`crate::fingerprint::Encoder::encode_json`]).
//!
//! Only 200 answers are kept: errors reach the SDK whole, so that its retries and error
//! handling are unchanged. A kept body is checked against DynamoDB's `x-amz-crc32` header where
//! there is one (the SDK does not check it): a damaged answer becomes a transient error that the
//! SDK retries, never an item written wrong. Outside [`capture`] (every other call of the
//! client) nothing changes; if a call inside it ever reaches the HTTP layer from another task,
//! nothing is kept and the caller falls back to the SDK's parsed items.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::ByteStream;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::ddbjson::{self, FormatError, Item};

/// How long reading one kept answer's body may take (a Scan page is at most 1 MB).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a call made inside [`capture`] leaves its answer's body.
type Slot = Arc<Mutex<Option<Bytes>>>;

tokio::task_local! {
    static SLOT: Slot;
}

/// Runs `call` (one SDK call of a client built with [`Capturing`]) and returns its result with
/// the body of its successful answer, if one was kept. With `Some(body)`, the SDK's output was
/// parsed from an empty object and holds nothing: the body is the answer.
pub async fn capture<T>(call: impl std::future::Future<Output = T>) -> (T, Option<Bytes>) {
    let slot: Slot = Arc::default();
    let out = SLOT.scope(slot.clone(), call).await;
    let body = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    (out, body)
}

/// An HTTP client that keeps the bodies of successful answers to calls made inside
/// [`capture`], and is `inner` otherwise.
#[derive(Debug, Clone)]
pub struct Capturing {
    inner: SharedHttpClient,
}

impl Capturing {
    pub fn wrap(inner: SharedHttpClient) -> SharedHttpClient {
        SharedHttpClient::new(Capturing { inner })
    }
}

impl HttpClient for Capturing {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(CapturingConnector {
            inner: self.inner.http_connector(settings, components),
        })
    }

    fn validate_base_client_config(
        &self,
        runtime_components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponentsBuilder,
        cfg: &aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        self.inner
            .validate_base_client_config(runtime_components, cfg)
    }

    fn validate_final_config(
        &self,
        runtime_components: &RuntimeComponents,
        cfg: &aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        self.inner.validate_final_config(runtime_components, cfg)
    }

    fn connector_metadata(
        &self,
    ) -> Option<aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata> {
        self.inner.connector_metadata()
    }
}

#[derive(Debug)]
struct CapturingConnector {
    inner: SharedHttpConnector,
}

impl HttpConnector for CapturingConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let answer = self.inner.call(request);
        let Ok(slot) = SLOT.try_with(Slot::clone) else {
            return answer;
        };
        HttpConnectorFuture::new(async move {
            let mut response = answer.await?;
            if response.status().as_u16() != 200 {
                return Ok(response);
            }
            let body = std::mem::replace(response.body_mut(), SdkBody::taken());
            let body = tokio::time::timeout(BODY_TIMEOUT, ByteStream::new(body).collect())
                .await
                .map_err(|_| {
                    ConnectorError::timeout(
                        format!(
                            "the answer's body did not arrive within {}s",
                            BODY_TIMEOUT.as_secs()
                        )
                        .into(),
                    )
                })?
                .map_err(|e| ConnectorError::io(e.into()))?
                .into_bytes();
            if let Some(sent) = response.headers().get("x-amz-crc32") {
                let crc = crc32fast::hash(&body);
                if sent.trim().parse::<u32>().ok() != Some(crc) {
                    return Err(ConnectorError::io(
                        format!(
                            "the answer's body ({} bytes) does not match its x-amz-crc32 header: damaged on the way",
                            body.len()
                        )
                        .into(),
                    ));
                }
            }
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(body);
            let headers = response.headers_mut();
            headers.remove("x-amz-crc32");
            headers.remove("content-length");
            *response.body_mut() = SdkBody::from("{}");
            Ok(response)
        })
    }
}

/// One Scan answer's items, each as its DynamoDB JSON text, borrowed from the body.
#[derive(Debug)]
pub struct Page<'a> {
    pub items: Vec<&'a str>,
    /// Where the next page starts; `None` at the end of the scan (or segment).
    pub next: Option<Item>,
}

#[derive(Deserialize)]
struct Answer<'a> {
    // Every Scan answer has Items and Count (an empty page too): an answer without them is
    // not read as an empty last page.
    #[serde(rename = "Items", borrow)]
    items: Vec<&'a RawValue>,
    #[serde(rename = "LastEvaluatedKey", borrow, default)]
    last_evaluated_key: Option<&'a RawValue>,
    #[serde(rename = "Count")]
    count: u64,
}

impl<'a> Page<'a> {
    /// Reads a Scan answer's body. Its items are checked only as far as JSON goes (each is an
    /// object); their DynamoDB JSON is checked where they are fingerprinted, which comes before
    /// they are written. Refused: a body that is not a Scan answer (no `Items` or no `Count`),
    /// or whose `Count` differs from the items it holds.
    pub fn parse(body: &'a [u8]) -> Result<Page<'a>, FormatError> {
        let bad = |problem: String| FormatError {
            path: "Scan answer".into(),
            problem,
        };
        let answer: Answer<'a> = serde_json::from_slice(body).map_err(|e| {
            bad(format!(
                "not a Scan answer ({:?} at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        if answer.count != answer.items.len() as u64 {
            return Err(bad(format!(
                "Count says {} items and the answer holds {}",
                answer.count,
                answer.items.len()
            )));
        }
        let mut items = Vec::with_capacity(answer.items.len());
        for raw in answer.items {
            let text = raw.get();
            if !text.starts_with('{') {
                return Err(bad("an item is not a JSON object".into()));
            }
            items.push(text);
        }
        let next = match answer.last_evaluated_key {
            Some(raw) if raw.get() != "null" => {
                Some(ddbjson::item_from_json(raw.get())?).filter(|k| !k.is_empty())
            }
            _ => None,
        };
        Ok(Page { items, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_gives_its_items_text_and_the_key_to_go_on_from() {
        let body = br#"{"Count": 2, "Items": [{"pk": {"S": "a"}, "n": {"N": "1"}}, {"pk": {"S": "b\n"}}], "LastEvaluatedKey": {"pk": {"S": "b\n"}}, "ScannedCount": 2}"#;
        let page = Page::parse(body).unwrap();
        assert_eq!(
            page.items,
            [
                r#"{"pk": {"S": "a"}, "n": {"N": "1"}}"#,
                r#"{"pk": {"S": "b\n"}}"#
            ]
        );
        let next = page.next.unwrap();
        assert_eq!(
            next["pk"],
            aws_sdk_dynamodb::types::AttributeValue::S("b\n".into())
        );
        let last = Page::parse(br#"{"Count":0,"Items":[],"ScannedCount":0}"#).unwrap();
        assert!(last.items.is_empty() && last.next.is_none());
    }

    #[test]
    fn a_cut_or_strange_answer_is_refused_without_its_content() {
        for (body, want) in [
            (
                &br#"{"Count": 2, "Items": [{"pk": {"S": "secret"}}]}"#[..],
                "Count says 2",
            ),
            (
                br#"{"Items": [{"pk": {"S": "secret"}}"#,
                "not a Scan answer",
            ),
            (br#"{"Count": 1, "Items": ["secret"]}"#, "not a JSON object"),
            (br#"{"Items": {"secret": 1}}"#, "not a Scan answer"),
            (br#"{}"#, "not a Scan answer"),
            (br#"{"Count": 0}"#, "not a Scan answer"),
            (br#"{"Items": []}"#, "not a Scan answer"),
            (
                br#"{"Count": 0, "Items": [], "LastEvaluatedKey": {"pk": {"X": "secret"}}}"#,
                "unknown type",
            ),
        ] {
            let e = Page::parse(body).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
            assert!(!e.contains("secret\""), "{e}");
        }
    }
}
