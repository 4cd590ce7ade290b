//! Which authorities the functions' HTTPS client trusts (`BACKSTOP_TLS_ROOTS`), against moto
//! serving HTTPS with a certificate from a local authority made here with openssl:
//! - `amazon` (the functions' default: Amazon Trust Services' roots, built in) refuses it, so an
//!   authority that is not Amazon's cannot vouch for an endpoint;
//! - `system` with that authority in the system store (`SSL_CERT_FILE`) accepts it, and the call
//!   reaches moto;
//! - either way the client takes `HTTPS_PROXY` and `NO_PROXY` from the environment, as the SDK's
//!   default client does.
//!
//! One test in its own file (its own process): the SDK reads the system store once per process,
//! so `SSL_CERT_FILE` is set before any client is built.

use std::path::Path;
use std::process::Command;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::config::Credentials;
use backstop::aws::{https_client, TlsRoots};
use backstop_testkit::local::Emulator;

/// A local authority and a certificate for 127.0.0.1 that it signed, in `dir`.
fn make_authority(dir: &Path) {
    let run = |args: &str| {
        let out = Command::new("openssl")
            .args(args.split_whitespace())
            .current_dir(dir)
            .output()
            .expect("openssl (Debian package openssl) runs");
        assert!(
            out.status.success(),
            "openssl {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        dir.join("ext.cnf"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    run(&format!(
        "req -x509 {ec} -keyout ca.key -out ca.pem -days 2 -subj /CN=backstop-test-ca \
         -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign"
    ));
    run(&format!(
        "req {ec} -keyout server.key -out server.csr -subj /CN=127.0.0.1"
    ));
    run(
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
         -days 2 -extfile ext.cnf",
    );
}

async fn list_tables(endpoint: &str, roots: TlsRoots) -> Result<usize, String> {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("tls", "tls", None, None, "tls-test"))
        .http_client(https_client(roots))
        .load()
        .await;
    aws_sdk_dynamodb::Client::new(&config)
        .list_tables()
        .send()
        .await
        .map(|out| out.table_names().len())
        .map_err(|e| {
            format!(
                "{:?}",
                aws_smithy_types::error::display::DisplayErrorContext(e)
            )
        })
}

#[tokio::test]
async fn amazon_roots_refuse_another_authority_and_system_roots_take_the_stores() {
    let dir = std::env::temp_dir().join(format!("backstop-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    make_authority(&dir);
    // Before any client is built (this file's only test).
    std::env::set_var("SSL_CERT_FILE", dir.join("ca.pem"));
    std::env::remove_var("SSL_CERT_DIR");

    let moto = Emulator::start_tls(&dir.join("server.pem"), &dir.join("server.key")).unwrap();
    let endpoint = moto.endpoint();
    assert!(endpoint.starts_with("https://"), "{endpoint}");

    let refused = list_tables(endpoint, TlsRoots::Amazon)
        .await
        .expect_err("Amazon's roots must not trust a local authority");
    assert!(
        refused.to_lowercase().contains("certificate") || refused.contains("UnknownIssuer"),
        "the error should say the certificate is not trusted: {refused}"
    );

    let tables = list_tables(endpoint, TlsRoots::System).await;
    assert!(
        tables.is_ok(),
        "the system store (SSL_CERT_FILE) holds the authority; the call should reach moto: {tables:?}"
    );

    // The proxy settings hold as for the SDK's own client: through a proxy that is not there
    // the call fails; with moto's address in NO_PROXY it goes direct again.
    std::env::set_var("HTTPS_PROXY", "http://127.0.0.1:1");
    let proxied = list_tables(endpoint, TlsRoots::System).await;
    assert!(
        proxied.is_err(),
        "HTTPS_PROXY names a closed port; the call must go through it and fail: {proxied:?}"
    );
    std::env::set_var("NO_PROXY", "127.0.0.1");
    let direct = list_tables(endpoint, TlsRoots::System).await;
    assert!(direct.is_ok(), "NO_PROXY covers moto: {direct:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
