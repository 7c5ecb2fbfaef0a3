//! How a request is copied so that it can be sent again after a `401`.

use http::Request;

/// Copies a request before the secret header is added, so that
/// [`recover_unauthorized`](super::SecretHeaderLayerBuilder::recover_unauthorized) can
/// send it again with a fresh secret. The same role as tower's
/// `retry::Policy::clone_request` and tower-http's `follow_redirect::Policy::clone_body`.
///
/// Provided: [`CloneBody`] (bodies that are `Clone`, such as `Full<Bytes>`, `Empty<Bytes>`,
/// `String`, `Vec<u8>`, `Bytes` and `()`) and [`NoReplay`] (never). Any
/// `Fn(&Request<B>) -> Option<Request<B>>` closure is one too:
///
/// ```
/// use std::time::Duration;
/// use bytes::Bytes;
/// use http::Request;
/// use http_body_util::combinators::BoxBody;
/// use tower_mlflow_secrets::{CachedSecret, HostAllowlist, SecretHeaderLayer, source::Static};
///
/// type Body = BoxBody<Bytes, std::io::Error>;
///
/// // Only bodiless GETs are replayed; a streaming body cannot be read twice.
/// let layer = SecretHeaderLayer::builder(CachedSecret::new(Static::new("tok")))
///     .allowlist(HostAllowlist::builder().host("mlflow.example.com").build().unwrap())
///     .recover_unauthorized_with(
///         Duration::from_secs(60),
///         |request: &Request<Body>| -> Option<Request<Body>> {
///             if request.method() != http::Method::GET {
///                 return None;
///             }
///             let mut copy = Request::new(BoxBody::default());
///             *copy.uri_mut() = request.uri().clone();
///             *copy.headers_mut() = request.headers().clone();
///             Some(copy)
///         },
///     )
///     .build()
///     .unwrap();
/// # drop(layer);
/// ```
pub trait CloneRequest<B> {
    /// A copy of `request` to send again, or `None` to give the `401` back as is.
    fn clone_request(&self, request: &Request<B>) -> Option<Request<B>>;
}

impl<B, F> CloneRequest<B> for F
where
    F: Fn(&Request<B>) -> Option<Request<B>>,
{
    fn clone_request(&self, request: &Request<B>) -> Option<Request<B>> {
        self(request)
    }
}

/// Copies requests whose body is `Clone` (method, URI, version, headers, extensions and
/// body). Meant for bodies that are cheap to clone: `Full<Bytes>`, `Empty<Bytes>`,
/// `String`, `Vec<u8>`, `Bytes`, `()`. Selected by
/// [`recover_unauthorized`](super::SecretHeaderLayerBuilder::recover_unauthorized).
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct CloneBody;

impl<B: Clone> CloneRequest<B> for CloneBody {
    fn clone_request(&self, request: &Request<B>) -> Option<Request<B>> {
        let mut copy = Request::new(request.body().clone());
        *copy.method_mut() = request.method().clone();
        *copy.uri_mut() = request.uri().clone();
        *copy.version_mut() = request.version();
        *copy.headers_mut() = request.headers().clone();
        *copy.extensions_mut() = request.extensions().clone();
        Some(copy)
    }
}

/// Never copies a request, so nothing is replayed: the default while 401 recovery is off,
/// and the choice for streaming bodies.
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct NoReplay;

impl<B> CloneRequest<B> for NoReplay {
    fn clone_request(&self, _request: &Request<B>) -> Option<Request<B>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http_body_util::{Empty, Full, combinators::BoxBody};

    use super::*;

    fn body_of<B: Clone>(body: B) -> Option<B> {
        CloneBody
            .clone_request(&Request::new(body))
            .map(Request::into_body)
    }

    #[test]
    fn known_bodies_are_cloned() {
        assert_eq!(body_of(String::from("x")).as_deref(), Some("x"));
        assert_eq!(body_of(vec![1u8]), Some(vec![1u8]));
        assert_eq!(
            body_of(Bytes::from_static(b"x")),
            Some(Bytes::from_static(b"x"))
        );
        assert_eq!(body_of(()), Some(()));
        assert!(body_of(Full::new(Bytes::from_static(b"x"))).is_some());
        assert!(body_of(Empty::<Bytes>::new()).is_some());
    }

    #[test]
    fn unknown_bodies_are_not() {
        #[derive(Clone)]
        struct Custom;
        assert!(NoReplay.clone_request(&Request::new(Custom)).is_none());
        assert!(
            NoReplay
                .clone_request(&Request::new(BoxBody::new(Empty::<Bytes>::new())))
                .is_none()
        );
    }

    #[test]
    fn closures_decide_per_request() {
        let only_get = |request: &Request<String>| {
            (request.method() == http::Method::GET).then(|| Request::new(request.body().clone()))
        };
        assert!(
            only_get
                .clone_request(&Request::new(String::new()))
                .is_some()
        );
        let post = Request::post("/").body(String::new()).unwrap();
        assert!(only_get.clone_request(&post).is_none());
    }

    #[test]
    fn request_copy_keeps_the_head() {
        let mut request = Request::post("http://localhost:1/x")
            .header("x-a", "1")
            .version(http::Version::HTTP_2)
            .body(String::from("body"))
            .unwrap();
        request.extensions_mut().insert(7u8);
        let copy = CloneBody.clone_request(&request).unwrap();
        assert_eq!(copy.method(), "POST");
        assert_eq!(copy.uri(), "http://localhost:1/x");
        assert_eq!(copy.version(), http::Version::HTTP_2);
        assert_eq!(copy.headers()["x-a"], "1");
        assert_eq!(copy.extensions().get::<u8>(), Some(&7));
        assert_eq!(copy.body(), "body");
    }
}
