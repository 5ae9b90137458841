//! The binary cache's shared store on an existing system, through Apache
//! OpenDAL: Redis (`redis://`) or WebDAV (`webdav+http://`,
//! `webdav+https://`), named by the config's `binary_cache_shared`. The
//! engine's [`SharedTier`] decides what is read and written; this module
//! only turns an address into an OpenDAL operator and its calls into
//! [`SharedStore`]'s.

use std::sync::Arc;

use opendal::{ErrorKind, OperationContext, Operator};
use rustle_engine::shared_cache::{SharedStore, SharedTier, StoreFuture};

use crate::config::CrossCompilationConfig;

/// Overrides the password of `binary_cache_shared`'s address, so that it
/// need not be written in a config file.
pub const PASSWORD_ENV: &str = "RUSTLE_BINARY_CACHE_SHARED_PASSWORD";

/// Where the shared store is, parsed from `binary_cache_shared`.
#[derive(Clone, PartialEq, Eq)]
pub enum SharedStoreAddress {
    /// `redis://[USER[:PASSWORD]@]HOST[:PORT][/DB]`.
    Redis {
        /// `redis://HOST:PORT` (or `rediss://`).
        endpoint: String,
        /// The database number.
        db: i64,
        /// Credentials.
        credentials: Credentials,
    },
    /// `webdav+http(s)://[USER[:PASSWORD]@]HOST[:PORT]/PATH/`.
    WebDav {
        /// `http(s)://HOST:PORT`.
        endpoint: String,
        /// The collection the cache lives in (`/PATH/`).
        root: String,
        /// Credentials.
        credentials: Credentials,
    },
}

/// A user name and password, either optional.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// The user.
    pub username: Option<String>,
    /// The password.
    pub password: Option<String>,
}

impl std::fmt::Debug for SharedStoreAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// A `binary_cache_shared` value that is not a store address.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid `binary_cache_shared` = {shown:?}: {reason}; expected redis://HOST[:PORT][/DB] or webdav+http(s)://HOST[:PORT]/PATH/ (empty for none)"
)]
pub struct SharedStoreAddressError {
    /// The value, its password hidden.
    pub shown: String,
    /// What is wrong with it.
    pub reason: String,
}

impl SharedStoreAddress {
    /// Parses `text`; `password` (from [`PASSWORD_ENV`]) replaces the
    /// address's own.
    pub fn parse(text: &str, password: Option<String>) -> Result<Self, SharedStoreAddressError> {
        let error = |reason: &str| SharedStoreAddressError { shown: hide_password(text), reason: reason.to_owned() };
        let url = url::Url::parse(text.trim()).map_err(|e| error(&e.to_string()))?;
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| error("it names no host"))?;
        let credentials = Credentials {
            username: Some(url.username().to_owned()).filter(|u| !u.is_empty()),
            password: password.or_else(|| url.password().map(str::to_owned)),
        };
        let host_port = |default: u16| format!("{host}:{}", url.port().unwrap_or(default));
        match url.scheme() {
            scheme @ ("redis" | "rediss") => {
                let db = match url.path().trim_matches('/') {
                    "" => 0,
                    db => db.parse().map_err(|_| error("a Redis address's path is its database number"))?,
                };
                Ok(Self::Redis { endpoint: format!("{scheme}://{}", host_port(6379)), db, credentials })
            }
            "webdav+http" | "webdav+https" => {
                let (http, default_port) = if url.scheme() == "webdav+https" { ("https", 443) } else { ("http", 80) };
                let root = format!("/{}/", url.path().trim_matches('/')).replace("//", "/");
                Ok(Self::WebDav { endpoint: format!("{http}://{}", host_port(default_port)), root, credentials })
            }
            other => Err(error(&format!("scheme `{other}` is not a store this build supports"))),
        }
    }

    /// How reports name the store: its address without credentials.
    pub fn name(&self) -> String {
        match self {
            Self::Redis { endpoint, db, .. } => format!("{endpoint}/{db}"),
            Self::WebDav { endpoint, root, .. } => format!("webdav+{endpoint}{root}"),
        }
    }
}

/// `text` with the password of a URL replaced by `***`.
fn hide_password(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => text.to_owned(),
    }
}

/// A shared store reached through an OpenDAL operator.
#[derive(Debug)]
pub struct OpenDalStore {
    name: String,
    operator: Operator,
    /// Redis's `HOST:PORT`, connected to once before the first operation:
    /// the Redis client retries a refused connection with backoff, so a
    /// server that is down would otherwise cost the whole timeout.
    reachable_first: Option<String>,
    reachable: tokio::sync::OnceCell<Result<(), String>>,
}

impl OpenDalStore {
    /// The operator for `address`. Nothing is contacted yet.
    pub fn open(address: &SharedStoreAddress) -> Result<Self, String> {
        let operator = match address {
            SharedStoreAddress::Redis { endpoint, db, credentials } => {
                let mut builder = opendal::services::Redis::default().endpoint(endpoint).db(*db).root("/rustle-cross/");
                if let Some(user) = &credentials.username {
                    builder = builder.username(user);
                }
                if let Some(password) = &credentials.password {
                    builder = builder.password(password);
                }
                Operator::new(builder).map_err(|e| e.to_string())?
            }
            SharedStoreAddress::WebDav { endpoint, root, credentials } => {
                let mut builder = opendal::services::Webdav::default().endpoint(endpoint).root(root);
                if let Some(user) = &credentials.username {
                    builder = builder.username(user);
                }
                if let Some(password) = &credentials.password {
                    builder = builder.password(password);
                }
                // reqwest is built without a TLS provider of its own: it uses
                // the process default, which is ring's (as for QUIC) unless
                // the embedding program installed another.
                let _ = rustls::crypto::ring::default_provider().install_default();
                let transport = opendal::HttpTransporter::new(opendal_http_transport_reqwest::ReqwestTransport::new(
                    reqwest_client()?,
                ));
                Operator::new(builder)
                    .map_err(|e| e.to_string())?
                    .with_context(OperationContext::new().with_http_transport(transport))
            }
        };
        let reachable_first = match address {
            SharedStoreAddress::Redis { endpoint, .. } => endpoint.split_once("://").map(|(_, a)| a.to_owned()),
            SharedStoreAddress::WebDav { .. } => None,
        };
        Ok(Self { name: address.name(), operator, reachable_first, reachable: tokio::sync::OnceCell::new() })
    }

    /// Whether the server accepts a connection at all (once per store).
    async fn reachable(&self) -> Result<(), String> {
        let Some(address) = &self.reachable_first else { return Ok(()) };
        self.reachable
            .get_or_init(|| async {
                tokio::net::TcpStream::connect(address)
                    .await
                    .map(drop)
                    .map_err(|e| format!("cannot connect to {address}: {e}"))
            })
            .await
            .clone()
    }
}

fn reqwest_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder().build().map_err(|e| format!("cannot make an HTTP client: {e}"))
}

impl SharedStore for OpenDalStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn read<'a>(&'a self, path: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            self.reachable().await?;
            match self.operator.read(path).await {
                Ok(buffer) => Ok(Some(buffer.to_vec())),
                Err(error) if error.kind() == ErrorKind::NotFound => Ok(None),
                Err(error) => Err(error.to_string()),
            }
        })
    }

    fn write<'a>(&'a self, path: &'a str, data: Vec<u8>) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.reachable().await?;
            match self.operator.write(path, data.clone()).await {
                Ok(_) => Ok(()),
                // WebDAV creates a file's collections first, and two writers
                // creating the same one at once can make the later fail
                // (apache2 answers 403 "File exists"): the collection is
                // there now, so once more is enough.
                Err(_) => self.operator.write(path, data).await.map(drop).map_err(|e| e.to_string()),
            }
        })
    }

    fn delete<'a>(&'a self, path: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.reachable().await?;
            self.operator.delete(path).await.map_err(|e| e.to_string())
        })
    }
}

/// The shared tier `config` names (`binary_cache_shared`), or `None`.
pub fn shared_tier(config: &CrossCompilationConfig) -> Result<Option<SharedTier>, SharedStoreAddressError> {
    let Some(address) = config.shared_store_address()? else { return Ok(None) };
    let store =
        OpenDalStore::open(&address).map_err(|reason| SharedStoreAddressError { shown: address.name(), reason })?;
    Ok(Some(SharedTier::new(Arc::new(store), config.binary_cache_shared_timeout())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_with_defaults_and_credentials() {
        let redis = SharedStoreAddress::parse("redis://cache.lan", None).unwrap();
        assert_eq!(redis.name(), "redis://cache.lan:6379/0");
        let redis = SharedStoreAddress::parse("redis://ci:s3cret@cache.lan:7000/3", None).unwrap();
        let SharedStoreAddress::Redis { endpoint, db, credentials } = &redis else { panic!("{redis:?}") };
        assert_eq!((endpoint.as_str(), *db), ("redis://cache.lan:7000", 3));
        assert_eq!(credentials.username.as_deref(), Some("ci"));
        assert_eq!(credentials.password.as_deref(), Some("s3cret"));
        assert!(!format!("{redis:?}").contains("s3cret"), "names never show the password");

        let dav = SharedStoreAddress::parse("webdav+https://u:p@dav.lan/team/cache", Some("env".into())).unwrap();
        let SharedStoreAddress::WebDav { endpoint, root, credentials } = &dav else { panic!("{dav:?}") };
        assert_eq!((endpoint.as_str(), root.as_str()), ("https://dav.lan:443", "/team/cache/"));
        assert_eq!(credentials.password.as_deref(), Some("env"), "{PASSWORD_ENV} wins over the address");
        let dav = SharedStoreAddress::parse("webdav+http://127.0.0.1:8080", None).unwrap();
        assert_eq!(dav.name(), "webdav+http://127.0.0.1:8080/");
    }

    #[test]
    fn a_bad_address_names_the_key_and_hides_the_password() {
        for (text, says) in [
            ("s3://bucket", "scheme `s3`"),
            ("redis://u:hunter2@host/zero", "database number"),
            ("cache.lan:6379", "host"),
            ("webdav+http://", "host"),
        ] {
            let error = SharedStoreAddress::parse(text, None).unwrap_err().to_string();
            assert!(error.contains("binary_cache_shared") && error.contains(says), "{text}: {error}");
            assert!(!error.contains("hunter2"), "{error}");
        }
    }
}
