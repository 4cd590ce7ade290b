//! The one place SDK clients are built. Build them once per process (outside the Lambda handler)
//! and pass references around.

use std::sync::{Arc, OnceLock};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

/// The certificate authorities the SDK's HTTPS client trusts (setting `BACKSTOP_TLS_ROOTS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsRoots {
    /// Amazon Trust Services' roots, built in (`shared/certs/amazon-trust-services.pem`): every
    /// AWS endpoint's certificate chains to one of them. The functions' default: nothing is read
    /// from disk at start, and no other authority can vouch for an AWS endpoint.
    Amazon,
    /// The system's store (`/etc/ssl/certs`, or `SSL_CERT_FILE` / `SSL_CERT_DIR`), read when the
    /// first client is built: for an endpoint behind a TLS-inspecting proxy or an emulator
    /// with its own authority. The CLI's default.
    System,
}

/// Amazon Trust Services' four roots and the Starfield root that cross-signs them, in PEM.
pub const AMAZON_ROOTS_PEM: &[u8] = include_bytes!("../certs/amazon-trust-services.pem");

impl TlsRoots {
    /// The functions' default in `region`: Amazon's roots in the partitions whose endpoints
    /// are known to chain to them (the commercial regions and GovCloud); the system's store
    /// anywhere else (China's regions, which are operated apart, the isolated partitions, and any
    /// partition newer than this list).
    pub fn default_for_region(region: Option<&str>) -> TlsRoots {
        const KNOWN: &[&str] = &[
            "us-", "eu-", "ap-", "sa-", "ca-", "me-", "af-", "il-", "mx-",
        ];
        match region.map(str::trim) {
            None | Some("") => TlsRoots::Amazon,
            Some(r) if KNOWN.iter().any(|p| r.starts_with(p)) && !r.contains("-iso") => {
                TlsRoots::Amazon
            }
            Some(_) => TlsRoots::System,
        }
    }

    /// Parses the setting's value: `amazon` or `system` (any case).
    pub fn parse(value: &str) -> Result<TlsRoots, String> {
        match value.trim().to_ascii_lowercase().as_str() {
            "amazon" => Ok(TlsRoots::Amazon),
            "system" => Ok(TlsRoots::System),
            _ => Err(format!(
                "{:?} is not one of amazon (Amazon Trust Services' roots, built in) or system \
                 (the machine's certificate store)",
                crate::report::clip(value, 64)
            )),
        }
    }
}

/// The SDK's HTTPS client trusting `roots`, otherwise built as the SDK builds its default one
/// (rustls with aws-lc; the client's connector settings and sleep; `HTTPS_PROXY`, `HTTP_PROXY`
/// and `NO_PROXY` from the environment, as for behavior versions from 2025-08-07).
pub fn https_client(roots: TlsRoots) -> SharedHttpClient {
    let store = match roots {
        TlsRoots::Amazon => TrustStore::empty().with_pem_certificate(AMAZON_ROOTS_PEM),
        TlsRoots::System => TrustStore::default(),
    };
    // Infallible in aws-smithy-http-client 1.5 (it returns Ok); were that to change, the
    // system's store is the fall-back, so that the functions still reach AWS.
    let context = TlsContext::builder()
        .with_trust_store(store)
        .build()
        .unwrap_or_default();
    aws_smithy_http_client::Builder::new().build_with_connector_fn(move |settings, components| {
        let mut connector = aws_smithy_http_client::ConnectorBuilder::default()
            .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(context.clone());
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(aws_smithy_http_client::proxy::ProxyConfig::from_env()));
        connector.build()
    })
}

/// The region the standard environment names (`AWS_REGION`, else `AWS_DEFAULT_REGION`), if any.
pub fn env_region() -> Option<String> {
    env_value("AWS_REGION").or_else(|| env_value("AWS_DEFAULT_REGION"))
}

/// A variable of the process's environment, `None` when unset or blank.
fn env_value(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// A value built on first use and shared by its clones: how [`Clients`] holds each SDK client,
/// so that a cold start builds none of them and a function builds only those its job calls
/// (each client's construction parses its service's endpoint rules). Reads like the value
/// itself (`clients.s3.list_objects_v2()`, `&clients.dynamodb` where a `&Client` is wanted).
pub struct Lazy<T> {
    cell: Arc<OnceLock<T>>,
    make: Arc<dyn Fn() -> T + Send + Sync>,
}

impl<T> Lazy<T> {
    /// Built by `make` when first used.
    pub fn new(make: impl Fn() -> T + Send + Sync + 'static) -> Lazy<T> {
        Lazy {
            cell: Arc::new(OnceLock::new()),
            make: Arc::new(make),
        }
    }

    /// Whether it has been built.
    pub fn is_built(&self) -> bool {
        self.cell.get().is_some()
    }
}

impl<T: Clone + Send + Sync + 'static> From<T> for Lazy<T> {
    /// One already built (a test's client with its own interceptors or endpoint).
    fn from(value: T) -> Lazy<T> {
        let cell = Arc::new(OnceLock::from(value.clone()));
        Lazy {
            cell,
            make: Arc::new(move || value.clone()),
        }
    }
}

impl<T> std::ops::Deref for Lazy<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.cell.get_or_init(|| (self.make)())
    }
}

impl<T> Clone for Lazy<T> {
    fn clone(&self) -> Lazy<T> {
        Lazy {
            cell: Arc::clone(&self.cell),
            make: Arc::clone(&self.make),
        }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Lazy<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.cell.get() {
            Some(value) => value.fmt(f),
            None => f.write_str("Lazy(not built yet)"),
        }
    }
}

/// The concrete SDK clients a job uses, each built on first use from one configuration and
/// then shared by every clone of this value.
#[derive(Debug, Clone)]
pub struct Clients {
    pub dynamodb: Lazy<aws_sdk_dynamodb::Client>,
    pub sns: Lazy<aws_sdk_sns::Client>,
    pub cloudwatch: Lazy<aws_sdk_cloudwatch::Client>,
    pub s3: Lazy<aws_sdk_s3::Client>,
    /// For continuations (export, restore): a new invocation of the running function.
    pub lambda: Lazy<aws_sdk_lambda::Client>,
    /// RDS and Aurora, for the database targets.
    pub rds: Lazy<aws_sdk_rds::Client>,
    /// ElastiCache, for the replication groups among the database targets.
    pub elasticache: Lazy<aws_sdk_elasticache::Client>,
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
            None => (*self.s3).clone(),
        }
    }

    /// The RDS client for `region` (this one's own when `None`): same credentials, endpoint and
    /// settings. For snapshot copies in a replica region.
    pub fn rds_in(&self, region: Option<&str>) -> aws_sdk_rds::Client {
        match region {
            Some(r) => aws_sdk_rds::Client::from_conf(
                self.rds
                    .config()
                    .to_builder()
                    .region(Region::new(r.to_owned()))
                    .build(),
            ),
            None => (*self.rds).clone(),
        }
    }

    /// From the standard AWS environment (region, credentials, `AWS_ENDPOINT_URL`), over HTTPS
    /// that trusts `roots`.
    ///
    /// Where the environment holds the region and the credentials (as Lambda's always does),
    /// they are taken from it directly: the default chains would find them there first, and
    /// naming them skips building the rest of each chain (profile, SSO, web identity with its
    /// STS client, container and instance metadata) on every cold start.
    pub async fn from_env(roots: TlsRoots) -> Clients {
        let mut loader =
            aws_config::defaults(BehaviorVersion::latest()).http_client(https_client(roots));
        if let Some(region) = env_region() {
            loader = loader.region(Region::new(region));
        }
        if env_value("AWS_ACCESS_KEY_ID").is_some() && env_value("AWS_SECRET_ACCESS_KEY").is_some()
        {
            loader = loader.credentials_provider(
                aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
            );
        }
        Clients::from_config(&loader.load().await)
    }

    /// Builds every client now (for an init that runs ahead of requests).
    pub fn build_all(&self) {
        let _ = (
            &*self.dynamodb,
            &*self.sns,
            &*self.cloudwatch,
            &*self.s3,
            &*self.lambda,
            &*self.rds,
            &*self.elasticache,
        );
    }

    /// Clients for `config`, none built until first used.
    pub fn from_config(config: &SdkConfig) -> Clients {
        let config = Arc::new(config.clone());
        fn with<T: 'static>(config: &Arc<SdkConfig>, make: fn(&SdkConfig) -> T) -> Lazy<T> {
            let config = Arc::clone(config);
            Lazy::new(move || make(&config))
        }
        Clients {
            // Its HTTP layer can keep a Scan answer's body for the export (crate::wire); for
            // every call made outside `wire::capture` it is the configured client unchanged.
            dynamodb: with(&config, |config| {
                let inner = config
                    .http_client()
                    .unwrap_or_else(|| https_client(TlsRoots::System));
                aws_sdk_dynamodb::Client::from_conf(
                    aws_sdk_dynamodb::config::Builder::from(config)
                        .http_client(crate::wire::Capturing::wrap(inner))
                        .build(),
                )
            }),
            sns: with(&config, aws_sdk_sns::Client::new),
            // PutMetricData bodies over 10 KB go gzip-compressed, which AWS accepts and moto
            // (5.2.5) answers with a 500: uncompressed where an endpoint is set.
            cloudwatch: with(&config, |config| {
                aws_sdk_cloudwatch::Client::from_conf(
                    aws_sdk_cloudwatch::config::Builder::from(config)
                        .disable_request_compression(config.endpoint_url().is_some())
                        .build(),
                )
            }),
            // Path-style addressing where an endpoint is set (an emulator has no bucket DNS).
            s3: with(&config, |config| {
                aws_sdk_s3::Client::from_conf(
                    aws_sdk_s3::config::Builder::from(config)
                        .force_path_style(config.endpoint_url().is_some())
                        .build(),
                )
            }),
            lambda: with(&config, aws_sdk_lambda::Client::new),
            rds: with(&config, aws_sdk_rds::Client::new),
            elasticache: with(&config, aws_sdk_elasticache::Client::new),
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

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    /// The base64 bodies of the PEM certificates in `pem`, whitespace removed.
    fn pem_bodies(pem: &str) -> Vec<String> {
        pem.split("-----BEGIN CERTIFICATE-----")
            .skip(1)
            .map(|rest| {
                let body = rest
                    .split("-----END CERTIFICATE-----")
                    .next()
                    .unwrap_or_default();
                body.split_whitespace().collect()
            })
            .collect()
    }

    #[test]
    fn lazy_builds_once_on_first_use_and_its_clones_share_it() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let built = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&built);
        let lazy = Lazy::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            7
        });
        let twin = lazy.clone();
        assert!(!lazy.is_built() && !twin.is_built());
        assert_eq!(format!("{lazy:?}"), "Lazy(not built yet)");
        assert_eq!(*twin + *lazy, 14);
        assert_eq!(built.load(Ordering::SeqCst), 1);
        assert!(lazy.is_built() && twin.is_built());
        let ready = Lazy::from(3);
        assert!(ready.is_built());
        assert_eq!(*ready, 3);
    }

    #[test]
    fn clients_are_built_only_when_used() {
        let config = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:1")
            .build();
        let clients = Clients::from_config(&config);
        let copy = clients.clone();
        let built = |c: &Clients| {
            [
                c.dynamodb.is_built(),
                c.sns.is_built(),
                c.cloudwatch.is_built(),
                c.s3.is_built(),
                c.lambda.is_built(),
            ]
        };
        assert_eq!(built(&clients), [false; 5]);
        assert_eq!(
            copy.dynamodb.config().region().map(|r| r.as_ref()),
            Some("us-east-1")
        );
        assert_eq!(built(&clients), [true, false, false, false, false]);
        // S3 keeps path-style addressing where an endpoint is set, in its own region too.
        assert_eq!(
            clients
                .s3_in(Some("eu-west-1"))
                .config()
                .region()
                .map(|r| r.as_ref()),
            Some("eu-west-1")
        );
        assert!(clients.s3.is_built() && !clients.lambda.is_built());
        copy.build_all();
        assert_eq!(built(&clients), [true; 5]);
    }

    #[test]
    fn amazon_roots_are_the_default_only_where_endpoints_chain_to_them() {
        for region in [
            None,
            Some("us-east-1"),
            Some("eu-west-3"),
            Some("us-gov-west-1"),
        ] {
            assert_eq!(
                TlsRoots::default_for_region(region),
                TlsRoots::Amazon,
                "{region:?}"
            );
        }
        for region in [
            "cn-north-1",
            "cn-northwest-1",
            "us-iso-east-1",
            "us-isob-east-1",
            "eu-isoe-west-1",
        ] {
            assert_eq!(
                TlsRoots::default_for_region(Some(region)),
                TlsRoots::System,
                "{region}"
            );
        }
    }

    #[test]
    fn tls_roots_parse_names_and_refuse_the_rest() {
        assert_eq!(TlsRoots::parse("amazon"), Ok(TlsRoots::Amazon));
        assert_eq!(TlsRoots::parse(" System "), Ok(TlsRoots::System));
        for bad in ["", "aws", "none", "system,amazon", "\u{0}"] {
            let err = TlsRoots::parse(bad).unwrap_err();
            assert!(
                err.contains("amazon") && err.contains("system"),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn built_in_roots_are_five_whole_certificates() {
        let pem = std::str::from_utf8(AMAZON_ROOTS_PEM).unwrap();
        let bodies = pem_bodies(pem);
        assert_eq!(
            bodies.len(),
            5,
            "Amazon Root CA 1-4 and Starfield Services Root G2"
        );
        for body in &bodies {
            let der = base64::engine::general_purpose::STANDARD
                .decode(body)
                .expect("base64");
            // A DER certificate: one SEQUENCE with a two-byte length that covers the rest.
            assert_eq!(der[..2], [0x30, 0x82]);
            let len = usize::from(der[2]) << 8 | usize::from(der[3]);
            assert_eq!(len + 4, der.len());
        }
        // And a TLS client builds with them.
        let _ = https_client(TlsRoots::Amazon);
    }

    /// Where Debian's ca-certificates is installed, each built-in root equals its copy there.
    #[test]
    fn built_in_roots_equal_the_distributions_copies() {
        let ours = pem_bodies(std::str::from_utf8(AMAZON_ROOTS_PEM).unwrap());
        let names = [
            "Amazon_Root_CA_1",
            "Amazon_Root_CA_2",
            "Amazon_Root_CA_3",
            "Amazon_Root_CA_4",
            "Starfield_Services_Root_Certificate_Authority_-_G2",
        ];
        for (name, body) in names.iter().zip(&ours) {
            let path = format!("/etc/ssl/certs/{name}.pem");
            match std::fs::read_to_string(&path) {
                Ok(theirs) => assert_eq!(pem_bodies(&theirs), vec![body.clone()], "{path}"),
                Err(e) => eprintln!("{path}: {e}; not compared"),
            }
        }
    }
}
