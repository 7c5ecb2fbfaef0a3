//! [`ProxyBody`], the body of every response the gateway sends.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use tower_mlflow_core::BoxError;

use crate::upstream::PooledBody;

/// The body of a response from the gateway: the upstream's, streamed as it arrives, or a
/// short one the gateway made itself (a page, a JSON error, a 401).
///
/// An enum, not a `BoxBody`: the proxied response, the common case, keeps the upstream's
/// body as it is, with no allocation for it and no virtual call per frame.
///
/// ```
/// use http_body::Body as _;
/// use mlflow_gateway::proxy::ProxyBody;
///
/// assert!(ProxyBody::default().is_end_stream());
/// assert_eq!(ProxyBody::from("no").size_hint().exact(), Some(2));
/// ```
#[derive(Debug, Default)]
pub struct ProxyBody {
    kind: Kind,
}

#[derive(Debug, Default)]
enum Kind {
    #[default]
    Empty,
    Full(Full<Bytes>),
    /// With the lease on the upstream connection, returned at the body's end.
    Upstream(PooledBody),
}

impl ProxyBody {
    /// A body with nothing in it.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The upstream's body, streamed.
    pub(crate) fn upstream(body: PooledBody) -> Self {
        Self {
            kind: Kind::Upstream(body),
        }
    }
}

impl From<Bytes> for ProxyBody {
    fn from(bytes: Bytes) -> Self {
        Self {
            kind: Kind::Full(Full::new(bytes)),
        }
    }
}

impl From<&'static str> for ProxyBody {
    fn from(text: &'static str) -> Self {
        Self::from(Bytes::from_static(text.as_bytes()))
    }
}

impl From<String> for ProxyBody {
    fn from(text: String) -> Self {
        Self::from(Bytes::from(text))
    }
}

impl From<Vec<u8>> for ProxyBody {
    fn from(bytes: Vec<u8>) -> Self {
        Self::from(Bytes::from(bytes))
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // Every variant is `Unpin`.
        match &mut self.get_mut().kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(full) => Pin::new(full)
                .poll_frame(cx)
                .map_err(|never| match never {}),
            Kind::Upstream(body) => Pin::new(body).poll_frame(cx).map_err(BoxError::from),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Full(full) => full.is_end_stream(),
            Kind::Upstream(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(full) => full.size_hint(),
            Kind::Upstream(body) => body.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;

    use super::*;

    async fn collected(body: ProxyBody) -> Bytes {
        body.collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn a_full_body_yields_its_bytes_once_then_ends() {
        let mut body = ProxyBody::from("hello");
        assert!(!body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(5));
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "hello");
        assert!(body.is_end_stream());
        assert!(body.frame().await.is_none());
        assert_eq!(
            collected(ProxyBody::from(String::from("text"))).await,
            "text"
        );
        assert_eq!(
            collected(ProxyBody::from(vec![1_u8, 2])).await,
            &[1_u8, 2][..]
        );
    }

    #[tokio::test]
    async fn an_empty_body_ends_at_once() {
        let body = ProxyBody::empty();
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
        assert_eq!(collected(body).await, "");
    }
}
