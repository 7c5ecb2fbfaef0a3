use std::{fmt, sync::Arc};

use tower_layer::Layer;

use super::{parse::Origin, service::OriginCheck};

/// Refuses state-changing requests with browser credentials from foreign origins.
///
/// Built with [`OriginCheckLayer::builder`]; see the [module docs](crate::origin).
#[derive(Clone)]
pub struct OriginCheckLayer {
    allowed: Arc<[Origin]>,
}

impl OriginCheckLayer {
    /// A builder; give it at least one [`allowed_origin`](OriginCheckLayerBuilder::allowed_origin).
    pub fn builder() -> OriginCheckLayerBuilder {
        OriginCheckLayerBuilder { inputs: Vec::new() }
    }
}

impl<S> Layer<S> for OriginCheckLayer {
    type Service = OriginCheck<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OriginCheck::new(inner, Arc::clone(&self.allowed))
    }
}

impl fmt::Debug for OriginCheckLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OriginCheckLayer")
            .field("allowed", &self.allowed)
            .finish()
    }
}

/// Builder of an [`OriginCheckLayer`].
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct OriginCheckLayerBuilder {
    inputs: Vec<String>,
}

impl OriginCheckLayerBuilder {
    /// Allows the origin of `url`: `https://mlflow.example.com`, or a public URL such as
    /// `https://example.com/mlflow/`, whose path is ignored. Scheme and host are compared
    /// case-insensitively, a trailing dot on the host and the scheme's default port are
    /// ignored. Checked by [`build`](Self::build).
    pub fn allowed_origin(mut self, url: impl Into<String>) -> Self {
        self.inputs.push(url.into());
        self
    }

    /// Allows the origins of all of `urls`; see [`allowed_origin`](Self::allowed_origin).
    pub fn allowed_origins<I>(mut self, urls: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.inputs.extend(urls.into_iter().map(Into::into));
        self
    }

    /// The layer, or the first input that is not an `http(s)` URL.
    pub fn build(self) -> Result<OriginCheckLayer, OriginCheckBuildError> {
        if self.inputs.is_empty() {
            return Err(OriginCheckBuildError::NoAllowedOrigin);
        }
        let mut allowed: Vec<Origin> = Vec::with_capacity(self.inputs.len());
        for input in self.inputs {
            let origin = Origin::parse(&input, true).map_err(|reason| {
                OriginCheckBuildError::InvalidOrigin {
                    input: redact_userinfo(&input),
                    reason,
                }
            })?;
            if !allowed.contains(&origin) {
                allowed.push(origin);
            }
        }
        Ok(OriginCheckLayer {
            allowed: allowed.into(),
        })
    }
}

/// `https://user:password@host/` → `https://…@host/`: a password never reaches an error.
fn redact_userinfo(input: &str) -> String {
    let Some((scheme, rest)) = input.split_once("://") else {
        return input.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://…{}", &rest[at..]),
        None => input.to_owned(),
    }
}

/// What [`OriginCheckLayerBuilder::build`] rejects.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OriginCheckBuildError {
    /// No origin was given: every checked request would be refused.
    NoAllowedOrigin,
    /// An input is not an `http(s)` URL with a host.
    InvalidOrigin {
        /// The input, with any user information replaced by `…`.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl fmt::Display for OriginCheckBuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoAllowedOrigin => f.write_str("no allowed origin given"),
            Self::InvalidOrigin { input, reason } => {
                write!(f, "invalid origin {input:?}: {reason}")
            }
        }
    }
}

impl std::error::Error for OriginCheckBuildError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalised_and_deduplicated() {
        let layer = OriginCheckLayer::builder()
            .allowed_origin("https://MLflow.example.com:443/")
            .allowed_origins(["https://mlflow.example.com.", "http://127.0.0.1:5000/x"])
            .build()
            .unwrap();
        assert_eq!(
            format!("{layer:?}"),
            "OriginCheckLayer { allowed: [https://mlflow.example.com, http://127.0.0.1:5000] }"
        );
    }

    #[test]
    fn errors_name_the_input_but_no_password() {
        let error = OriginCheckLayer::builder().build().unwrap_err();
        assert_eq!(error, OriginCheckBuildError::NoAllowedOrigin);

        let error = OriginCheckLayer::builder()
            .allowed_origin("https://ok.test")
            .allowed_origin("mlflow.example.com")
            .build()
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"invalid origin "mlflow.example.com": no scheme (`https://…`)"#
        );

        let error = OriginCheckLayer::builder()
            .allowed_origin("https://alice:s3cr3t@a.test/x")
            .build()
            .unwrap_err();
        let text = error.to_string();
        assert!(
            !text.contains("s3cr3t") && !text.contains("alice"),
            "{text}"
        );
        assert!(text.contains(r#""https://…@a.test/x""#), "{text}");
    }
}
