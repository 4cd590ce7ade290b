//! The one place SDK clients are built. Build them once per process (outside the Lambda handler)
//! and pass references around.

use aws_config::{BehaviorVersion, Region, SdkConfig};

/// The concrete SDK clients a job uses.
#[derive(Debug, Clone)]
pub struct Clients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sns: aws_sdk_sns::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub s3: aws_sdk_s3::Client,
    /// For continuations (export, restore): a new invocation of the running function.
    pub lambda: aws_sdk_lambda::Client,
}

impl Clients {
    /// Invokes `function` asynchronously (InvocationType Event) with `payload`: how a long job
    /// continues in a new invocation of itself. `operation` names the call in the error.
    pub async fn invoke_async(
        &self,
        operation: &'static str,
        function: &str,
        payload: &serde_json::Value,
    ) -> crate::Result<()> {
        self.lambda
            .invoke()
            .function_name(function)
            .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
            .payload(aws_sdk_lambda::primitives::Blob::new(payload.to_string()))
            .send()
            .await
            .map_err(|e| crate::Error::aws(operation, format!("function {function}"), e))?;
        Ok(())
    }

    /// The S3 client for `region` (this one's own when `None`): same credentials, endpoint and
    /// settings. For replicas in another region.
    pub fn s3_in(&self, region: Option<&str>) -> aws_sdk_s3::Client {
        match region {
            Some(r) => aws_sdk_s3::Client::from_conf(
                self.s3
                    .config()
                    .to_builder()
                    .region(Region::new(r.to_owned()))
                    .build(),
            ),
            None => self.s3.clone(),
        }
    }

    /// From the standard AWS environment (region, credentials, `AWS_ENDPOINT_URL`).
    pub async fn from_env() -> Clients {
        let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
        Clients::from_config(&config)
    }

    pub fn from_config(config: &SdkConfig) -> Clients {
        Clients {
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            sns: aws_sdk_sns::Client::new(config),
            cloudwatch: aws_sdk_cloudwatch::Client::new(config),
            // Path-style addressing where an endpoint is set (an emulator has no bucket DNS).
            s3: aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(config)
                    .force_path_style(config.endpoint_url().is_some())
                    .build(),
            ),
            lambda: aws_sdk_lambda::Client::new(config),
        }
    }
}

/// SDK configuration for a local emulator on `endpoint`: region us-east-1 and dummy credentials.
pub async fn emulator_config(endpoint: &str) -> SdkConfig {
    let credentials = aws_sdk_dynamodb::config::Credentials::new(
        "backstop-local",
        "backstop-local",
        None,
        None,
        "backstop-local-emulator",
    );
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(credentials)
        .load()
        .await
}
