use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use http::{HeaderValue, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_service::Service;

use tower_mlflow_core::BoxError;

use super::{SecretHeaderError, layer::Shared, recovery::same_secret, service::start};
use crate::cache::{SecretSnapshot, Unavailable};

type SecretFuture = Pin<Box<dyn Future<Output = Result<SecretSnapshot, Unavailable>> + Send>>;

/// What is needed to send the request again after a 401.
pub(crate) struct Replay<S, B> {
    /// The request as it was before the secret header was added.
    pub(crate) request: Request<B>,
    /// A clone of the inner service (not yet polled ready).
    pub(crate) inner: S,
    /// The secret version the server rejected.
    pub(crate) used: SecretSnapshot,
}

/// A request waiting for the secret.
pub(crate) struct Pending<S, B> {
    request: Request<B>,
    /// The request as it was, for a replay after a `401`.
    copy: Option<Request<B>>,
    /// The inner service, already ready.
    inner: S,
}

pin_project! {
    /// Response future of [`SecretHeader`](super::SecretHeader).
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
        shared: Arc<Shared>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        // Waiting for the cache. Boxed, so that the request and its copy do not make every
        // state (the cached path's included) as large as two requests.
        Fetching {
            secret: SecretFuture,
            pending: Option<Box<Pending<S, B>>>,
        },
        Calling {
            #[pin]
            future: S::Future,
            replay: Option<Replay<S, B>>,
        },
        // Got a 401; fetching a fresh secret. `response` is returned if that fails.
        Refreshing {
            secret: SecretFuture,
            replay: Option<Replay<S, B>>,
            response: Option<S::Response>,
        },
        // Waiting for the cloned inner service to be ready for the replay.
        Replaying {
            replay: Option<Replay<S, B>>,
            value: Option<HeaderValue>,
        },
        Failed {
            error: Option<SecretHeaderError>,
        },
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    pub(crate) fn calling(
        future: S::Future,
        replay: Option<Replay<S, B>>,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            state: State::Calling { future, replay },
            shared,
        }
    }

    pub(crate) fn failed(error: SecretHeaderError, shared: Arc<Shared>) -> Self {
        Self {
            state: State::Failed { error: Some(error) },
            shared,
        }
    }

    pub(crate) fn fetching(
        request: Request<B>,
        copy: Option<Request<B>>,
        inner: S,
        shared: Arc<Shared>,
    ) -> Self {
        let secret = shared.secret.clone();
        Self {
            state: State::Fetching {
                secret: Box::pin(async move { secret.get().await }),
                pending: Some(Box::new(Pending {
                    request,
                    copy,
                    inner,
                })),
            },
            shared,
        }
    }
}

impl<S, B> fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

/// What `expect` says when the future is polled again after it returned `Ready`, which the
/// `Future` contract allows to panic (tower-http's futures do the same).
const POLLED_AFTER_COMPLETION: &str = "ResponseFuture polled after completion";

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
{
    type Output = Result<Response<ResBody>, SecretHeaderError>;

    #[allow(
        clippy::expect_used,
        reason = "polling a finished future is a caller bug"
    )]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Fetching { secret, pending } => {
                    let result = ready!(secret.as_mut().poll(cx));
                    let Pending {
                        request,
                        copy,
                        mut inner,
                    } = *pending.take().expect(POLLED_AFTER_COMPLETION);
                    let next = match result {
                        Ok(snapshot) => {
                            let shared = Arc::clone(this.shared);
                            start(&mut inner, request, copy, snapshot, shared).state
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "no usable secret; request not sent");
                            State::Failed {
                                error: Some(SecretHeaderError::Unavailable(err.into())),
                            }
                        }
                    };
                    this.state.set(next);
                }
                StateProj::Calling { future, replay } => {
                    let response =
                        ready!(future.poll(cx)).map_err(|e| SecretHeaderError::Inner(e.into()))?;
                    if response.status() != StatusCode::UNAUTHORIZED {
                        return Poll::Ready(Ok(response));
                    }
                    let Some(replay) = replay.take() else {
                        return Poll::Ready(Ok(response));
                    };
                    let next = unauthorized(this.shared, replay, response);
                    match next {
                        Ok(state) => this.state.set(state),
                        Err(response) => return Poll::Ready(Ok(response)),
                    }
                }
                StateProj::Refreshing {
                    secret,
                    replay,
                    response,
                } => {
                    let result = ready!(secret.as_mut().poll(cx));
                    let replay = replay.take().expect(POLLED_AFTER_COMPLETION);
                    let response = response.take().expect(POLLED_AFTER_COMPLETION);
                    if let Ok(snapshot) = &result {
                        let unchanged = same_secret(snapshot, &replay.used);
                        if let Some(recovery) = &this.shared.recovery {
                            recovery.record(unchanged);
                        }
                        if unchanged {
                            // The same secret would only be refused again.
                            tracing::debug!(
                                "refresh after 401 returned the same secret; returning the 401"
                            );
                            return Poll::Ready(Ok(response));
                        }
                    }
                    let value = result.map_err(BoxError::from).and_then(|snapshot| {
                        this.shared.header_value(&snapshot).map_err(BoxError::from)
                    });
                    match value {
                        Ok(value) => this.state.set(State::Replaying {
                            replay: Some(replay),
                            value: Some(value),
                        }),
                        Err(err) => {
                            tracing::warn!(error = %err, "refresh after 401 failed; returning the 401");
                            return Poll::Ready(Ok(response));
                        }
                    }
                }
                StateProj::Replaying { replay, value } => {
                    let pending = replay.as_mut().expect(POLLED_AFTER_COMPLETION);
                    ready!(pending.inner.poll_ready(cx))
                        .map_err(|e| SecretHeaderError::Inner(e.into()))?;
                    let Replay {
                        mut request,
                        mut inner,
                        ..
                    } = replay.take().expect(POLLED_AFTER_COMPLETION);
                    let value = value.take().expect(POLLED_AFTER_COMPLETION);
                    request
                        .headers_mut()
                        .insert(this.shared.header_name().clone(), value);
                    tracing::debug!("replaying the request once with a refreshed secret");
                    let future = inner.call(request);
                    this.state.set(State::Calling {
                        future,
                        replay: None,
                    });
                }
                StateProj::Failed { error } => {
                    return Poll::Ready(Err(error.take().expect(POLLED_AFTER_COMPLETION)));
                }
            }
        }
    }
}

/// Decides what to do after a 401: replay with a newer cached secret, force one refresh
/// (throttled), or give the 401 back (`Err`).
fn unauthorized<S, B, ResBody>(
    shared: &Arc<Shared>,
    replay: Replay<S, B>,
    response: Response<ResBody>,
) -> Result<State<S, B>, Response<ResBody>>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    let Some(recovery) = &shared.recovery else {
        return Err(response);
    };
    // Someone else already replaced the rejected secret: use theirs, no fetch needed. A
    // refetch that brought the same value back is no replacement.
    if let Some(current) = shared.secret.try_get() {
        if current.generation() != replay.used.generation() && !same_secret(&current, &replay.used)
        {
            return match shared.header_value(&current) {
                Ok(value) => Ok(State::Replaying {
                    replay: Some(replay),
                    value: Some(value),
                }),
                Err(_) => Err(response),
            };
        }
    }
    if !recovery.try_claim() {
        tracing::debug!("401 received; a forced refresh ran recently, not retrying");
        return Err(response);
    }
    tracing::debug!("401 received; fetching the secret again");
    let secret = shared.secret.clone();
    let used = replay.used.clone();
    Ok(State::Refreshing {
        secret: Box::pin(async move { secret.refresh_after_rejection(&used).await }),
        replay: Some(replay),
        response: Some(response),
    })
}
