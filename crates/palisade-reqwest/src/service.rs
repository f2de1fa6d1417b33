use std::task::{Context, Poll};

use palisade_core::{Body, TransportError};
use tower_service::Service;

use crate::body::ResponseBody;
use crate::config::PoolConfig;
use crate::convert::into_reqwest_request;
use crate::error::ConfigError;
use crate::future::ResponseFuture;

/// A `reqwest::Client` as a [`tower_service::Service`] over `http` types: the
/// transport at the bottom of a palisade stack.
///
/// It takes `http::Request<palisade_core::Body>` and returns
/// `http::Response<`[`ResponseBody`]`>`, whose body streams. Failures are
/// [`TransportError`]s of the right kind, with the `reqwest::Error` as the
/// source (see [`transport_error_kind`](crate::transport_error_kind)).
///
/// It is always ready and cheap to clone: clones share the client's
/// connection pool, as `reqwest::Client` clones do.
#[derive(Debug, Clone)]
pub struct ReqwestService {
    client: reqwest::Client,
}

impl ReqwestService {
    /// Wraps a client.
    pub const fn new(client: reqwest::Client) -> Self {
        Self { client }
    }

    /// Builds a client from a [`PoolConfig`] and wraps it.
    ///
    /// # Errors
    ///
    /// When the configuration is invalid or reqwest cannot build the client.
    pub fn from_pool(config: &PoolConfig) -> Result<Self, ConfigError> {
        config.build().map(Self::new)
    }

    /// The client.
    pub const fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Returns the client.
    pub fn into_client(self) -> reqwest::Client {
        self.client
    }
}

impl From<reqwest::Client> for ReqwestService {
    fn from(client: reqwest::Client) -> Self {
        Self::new(client)
    }
}

impl Service<http::Request<Body>> for ReqwestService {
    type Response = http::Response<ResponseBody>;
    type Error = TransportError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        // reqwest queues on its pool internally; it is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> ResponseFuture {
        match into_reqwest_request(req) {
            Ok(req) => ResponseFuture::sending(Service::call(&mut self.client, req)),
            Err(err) => ResponseFuture::failed(err),
        }
    }
}
