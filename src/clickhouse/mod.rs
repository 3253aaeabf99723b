//! ClickHouse access: the official `clickhouse` crate configured from
//! `pipeline.yaml`, and schema migrations ([`schema`]).
//!
//! Nothing here is specific to the local chDB endpoint: the same code talks to a
//! ClickHouse server or cluster over HTTP(S).

pub mod schema;

use std::time::Duration;

use anyhow::Context;
use clickhouse::{Client, Compression};

use crate::config::ClickHouseConfig;
use crate::exit::Unavailable;

/// Which credentials a client uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The writer (`clickhouse.user`): ingest, aggregate, schema.
    Write,
    /// The read-only user (`clickhouse.readonly_user`, else the writer): query, alerts.
    Read,
}

/// A client for the configured database.
pub fn client(c: &ClickHouseConfig, access: Access) -> Client {
    let (user, password) = match access {
        Access::Read if !c.readonly_user.is_empty() => (&c.readonly_user, &c.readonly_password),
        _ => (&c.user, &c.password),
    };
    Client::default()
        .with_url(&c.url)
        .with_user(user)
        .with_password(password.expose())
        .with_database(&c.database)
        .with_compression(if c.compression {
            Compression::Lz4
        } else {
            Compression::None
        })
}

/// A client without a current database (to create it).
pub fn server_client(c: &ClickHouseConfig) -> Client {
    Client::default()
        .with_url(&c.url)
        .with_user(&c.user)
        .with_password(c.password.expose())
        .with_compression(if c.compression {
            Compression::Lz4
        } else {
            Compression::None
        })
}

/// The server's version, failing with [`Unavailable`] (exit 69) when it does not
/// answer within `timeout`.
pub async fn version(c: &ClickHouseConfig, timeout: Duration) -> anyhow::Result<String> {
    let q = server_client(c)
        .query("SELECT version()")
        .fetch_one::<String>();
    match tokio::time::timeout(timeout, q).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Unavailable(format!(
            "ClickHouse at {} answered with an error: {e}",
            c.url
        )))
        .context("checking the ClickHouse connection"),
        Err(_) => Err(Unavailable(format!(
            "ClickHouse at {} did not answer within {timeout:?}; is it running? (`ridectl local up`)",
            c.url
        ))
        .into()),
    }
}
