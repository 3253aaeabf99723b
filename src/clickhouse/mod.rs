//! ClickHouse access: the official `clickhouse` crate configured from
//! `pipeline.yaml`, and schema migrations ([`schema`]).
//!
//! Nothing here is specific to the local chDB endpoint: the same code talks to a
//! ClickHouse server or cluster over HTTP or HTTPS. `clickhouse.ca_location` adds a
//! CA (e.g. a self-signed one) to the system trust store for HTTPS.

pub mod schema;

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use clickhouse::{Client, Compression};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::ClickHouseConfig;
use crate::exit::{AuthFailed, Unavailable};

/// Which credentials a client uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The writer (`clickhouse.user`): ingest, aggregate, schema.
    Write,
    /// The read-only user (`clickhouse.readonly_user`, else the writer): query, alerts.
    Read,
}

impl Access {
    /// The user name and configuration key this access uses.
    pub fn user(self, c: &ClickHouseConfig) -> (&str, &'static str) {
        match self {
            Access::Read if !c.readonly_user.is_empty() => {
                (&c.readonly_user, "clickhouse.readonly_password")
            }
            _ => (&c.user, "clickhouse.password"),
        }
    }
}

/// A client for the configured database. When `clickhouse.ca_location` cannot be
/// loaded the error is logged and the system trust store alone is used; commands
/// call [`try_client`] (or [`version`]) first, which report it.
pub fn client(c: &ClickHouseConfig, access: Access) -> Client {
    try_client(c, access).unwrap_or_else(|e| {
        tracing::error!("{e:#}");
        configure(Client::default(), c, access).with_database(&c.database)
    })
}

/// A client for the configured database; fails when `clickhouse.ca_location`
/// cannot be loaded.
pub fn try_client(c: &ClickHouseConfig, access: Access) -> anyhow::Result<Client> {
    Ok(configure(base(c)?, c, access).with_database(&c.database))
}

/// A client without a current database (to create it), as the writer.
pub fn server_client(c: &ClickHouseConfig) -> Client {
    try_server_client(c).unwrap_or_else(|e| {
        tracing::error!("{e:#}");
        configure(Client::default(), c, Access::Write)
    })
}

/// [`server_client`], failing when `clickhouse.ca_location` cannot be loaded.
pub fn try_server_client(c: &ClickHouseConfig) -> anyhow::Result<Client> {
    Ok(configure(base(c)?, c, Access::Write))
}

fn configure(client: Client, c: &ClickHouseConfig, access: Access) -> Client {
    let password = match access {
        Access::Read if !c.readonly_user.is_empty() => &c.readonly_password,
        _ => &c.password,
    };
    client
        .with_url(&c.url)
        .with_user(access.user(c).0)
        .with_password(password.expose())
        .with_compression(if c.compression {
            Compression::Lz4
        } else {
            Compression::None
        })
}

/// The crate's default client, or one whose TLS connector also trusts
/// `clickhouse.ca_location` (same pool and keep-alive settings as the default).
fn base(c: &ClickHouseConfig) -> anyhow::Result<Client> {
    let Some(ca) = &c.ca_location else {
        return Ok(Client::default());
    };
    let mut tls = hyper_tls::native_tls::TlsConnector::builder();
    for cert in load_certificates(ca)? {
        tls.add_root_certificate(cert);
    }
    let tls = tls
        .build()
        .context("cannot set up TLS for clickhouse.ca_location")?;
    let mut http = HttpConnector::new();
    http.set_keepalive(Some(Duration::from_secs(60)));
    http.enforce_http(false);
    let https = hyper_tls::HttpsConnector::from((http, tls.into()));
    let hyper = HyperClient::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(2))
        .build(https);
    Ok(Client::with_http_client(hyper))
}

/// Every certificate of a PEM file.
fn load_certificates(path: &Path) -> anyhow::Result<Vec<hyper_tls::native_tls::Certificate>> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read clickhouse.ca_location {} (a PEM file of CA certificates)",
            path.display()
        )
    })?;
    const END: &str = "-----END CERTIFICATE-----";
    let certs: Vec<_> = text
        .split_inclusive(END)
        .filter(|block| block.contains("-----BEGIN CERTIFICATE-----"))
        .map(|block| hyper_tls::native_tls::Certificate::from_pem(block.trim().as_bytes()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("clickhouse.ca_location {}: bad PEM", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!(
            "clickhouse.ca_location {} holds no PEM certificate",
            path.display()
        );
    }
    Ok(certs)
}

/// `url` without credentials in it (`https://user:pw@host` → `https://host`), for
/// messages.
pub fn display_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit('@').next().unwrap_or(authority);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_string(),
    }
}

/// An error with its sources (`network error: client error (Connect): ... certificate
/// verify failed`): the TLS detail is only in the sources.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// True when ClickHouse refused the credentials (`AUTHENTICATION_FAILED`,
/// `WRONG_PASSWORD`, `UNKNOWN_USER`, `REQUIRED_PASSWORD`).
pub fn is_auth_error(e: &clickhouse::error::Error) -> bool {
    match e {
        clickhouse::error::Error::BadResponse(text) => [
            "(AUTHENTICATION_FAILED)",
            "(WRONG_PASSWORD)",
            "(UNKNOWN_USER)",
            "(REQUIRED_PASSWORD)",
        ]
        .iter()
        .any(|name| text.contains(name)),
        _ => false,
    }
}

/// The [`AuthFailed`] error (exit 77) for a refused `access`.
pub fn auth_failed(c: &ClickHouseConfig, access: Access) -> AuthFailed {
    let (user, key) = access.user(c);
    let var = if key.ends_with("readonly_password") {
        "CLICKHOUSE_READONLY_PASSWORD"
    } else {
        "CLICKHOUSE_PASSWORD"
    };
    AuthFailed(format!(
        "ClickHouse at {} refused user {user:?}: authentication failed; check {key} \
         (pipeline.yaml reads it from the environment, e.g. {var})",
        display_url(&c.url)
    ))
}

/// The server's version, asked as `access`'s user: [`Unavailable`] (exit 69) when
/// it does not answer within `timeout`, [`AuthFailed`] (exit 77) when it refuses
/// the credentials.
pub async fn version_as(
    c: &ClickHouseConfig,
    access: Access,
    timeout: Duration,
) -> anyhow::Result<String> {
    let client = configure(base(c)?, c, access);
    let q = client.query("SELECT version()").fetch_one::<String>();
    match tokio::time::timeout(timeout, q).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) if is_auth_error(&e) => Err(auth_failed(c, access).into()),
        Ok(Err(e)) => Err(Unavailable(format!(
            "ClickHouse at {} answered with an error: {}",
            display_url(&c.url),
            error_chain(&e)
        )))
        .context("checking the ClickHouse connection"),
        Err(_) => Err(Unavailable(format!(
            "ClickHouse at {} did not answer within {timeout:?}; is it running? (`ridectl local up`)",
            display_url(&c.url)
        ))
        .into()),
    }
}

/// [`version_as`] the writer.
pub async fn version(c: &ClickHouseConfig, timeout: Duration) -> anyhow::Result<String> {
    version_as(c, Access::Write, timeout).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            display_url("https://u:pw@ch.example:8443/x?y"),
            "https://ch.example:8443/x?y"
        );
        assert_eq!(
            display_url("http://127.0.0.1:8123"),
            "http://127.0.0.1:8123"
        );
    }

    #[test]
    fn auth_errors_are_recognized() {
        let e = clickhouse::error::Error::BadResponse(
            "Code: 516. DB::Exception: x: Authentication failed. (AUTHENTICATION_FAILED)".into(),
        );
        assert!(is_auth_error(&e));
        let e = clickhouse::error::Error::BadResponse("Code: 60. (UNKNOWN_TABLE)".into());
        assert!(!is_auth_error(&e));
    }
}
