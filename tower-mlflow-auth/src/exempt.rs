//! Paths that skip authentication: deny by default, and never reachable through an encoding.
//!
//! [`Exemptions`] is an allowlist of exact paths and segment prefixes, each optionally limited
//! to a set of methods. It is empty by default, so every request is authenticated.
//!
//! Only a **canonical** request path can be exempt: it starts with `/`, is ASCII, and has no
//! `%`, no empty, `.` or `..` segment, no `\`, no `;` and no control characters. Anything else — `/health/`, `//health`, `/%68ealth`, `/static/../api`,
//! `/health;x` — is authenticated like any other path. Matching is byte-for-byte and
//! case-sensitive on `uri.path()`. However a router downstream decodes or normalises a path,
//! disagreeing with this matcher can only cost a spurious 401, never a bypass.
//!
//! A segment prefix `/static` matches `/static` and `/static/…`, never `/staticX`.
//!
//! ```
//! use http::Method;
//! use tower_mlflow_auth::Exemptions;
//!
//! let exemptions = Exemptions::new()
//!     .exact_for([Method::GET, Method::HEAD], "/health")?
//!     .prefix("/static-files")?;
//!
//! assert!(exemptions.is_exempt(&Method::GET, "/health"));
//! assert!(!exemptions.is_exempt(&Method::POST, "/health"));
//! assert!(exemptions.is_exempt(&Method::GET, "/static-files/js/main.js"));
//! assert!(!exemptions.is_exempt(&Method::GET, "/static-files/../api/2.0/mlflow/users/list"));
//! assert!(!exemptions.is_exempt(&Method::GET, "/%68ealth"));
//! assert!(!exemptions.is_exempt(&Method::GET, "/healthz"));
//! # Ok::<_, tower_mlflow_auth::ExemptionError>(())
//! ```

use std::fmt;

use http::Method;

/// An allowlist of request paths that skip authentication. Empty (deny all) by default.
///
/// See the [module docs](crate::exempt).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exemptions {
    rules: Vec<Rule>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    path: Box<str>,
    prefix: bool,
    /// `None` means every method.
    methods: Option<Box<[Method]>>,
}

impl Rule {
    fn matches(&self, method: &Method, path: &str) -> bool {
        let path_matches = if self.prefix {
            path.strip_prefix(&*self.path)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        } else {
            path == &*self.path
        };
        path_matches
            && self
                .methods
                .as_ref()
                .is_none_or(|methods| methods.contains(method))
    }
}

impl Exemptions {
    /// No exemptions: every request is authenticated.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Exempts exactly `path`, for every method.
    ///
    /// # Errors
    ///
    /// [`ExemptionError::NotCanonical`] unless `path` is canonical (see the
    /// [module docs](crate::exempt)).
    pub fn exact(self, path: &str) -> Result<Self, ExemptionError> {
        self.push(path, false, None)
    }

    /// Exempts `prefix` and every path below it (`prefix/…`), for every method.
    ///
    /// # Errors
    ///
    /// [`ExemptionError::NotCanonical`] unless `prefix` is canonical;
    /// [`ExemptionError::ExemptsEverything`] for `/`.
    pub fn prefix(self, prefix: &str) -> Result<Self, ExemptionError> {
        self.push(prefix, true, None)
    }

    /// Exempts exactly `path` for the given methods only.
    ///
    /// # Errors
    ///
    /// As [`exact`](Self::exact), and [`ExemptionError::NoMethods`] for an empty method set.
    pub fn exact_for(
        self,
        methods: impl IntoIterator<Item = Method>,
        path: &str,
    ) -> Result<Self, ExemptionError> {
        self.push(path, false, Some(collect_methods(methods)?))
    }

    /// Exempts `prefix` and every path below it for the given methods only.
    ///
    /// # Errors
    ///
    /// As [`prefix`](Self::prefix), and [`ExemptionError::NoMethods`] for an empty method set.
    pub fn prefix_for(
        self,
        methods: impl IntoIterator<Item = Method>,
        prefix: &str,
    ) -> Result<Self, ExemptionError> {
        self.push(prefix, true, Some(collect_methods(methods)?))
    }

    /// The routes MLflow 3.17's `basic-auth` app leaves open, tightened.
    ///
    /// MLflow exempts any path that *starts with* `/static`, `/favicon.ico` or `/health` (a raw
    /// string prefix), plus `…/mlflow/server-info` under an API prefix. This preset exempts,
    /// for `GET` and `HEAD` only and on canonical paths only:
    ///
    /// | MLflow | here |
    /// |---|---|
    /// | `/static*` (raw prefix; also `/staticX`, `/static-anything`) | segment prefixes `/static` and `/static-files` (the UI bundle) |
    /// | `/favicon.ico*` | exactly `/favicon.ico` |
    /// | `/health*` (also `/healthz`, `/health-anything`) | exactly `/health` |
    /// | `/mlflow/server-info`, `/(ajax-)api/<d>.<d>/mlflow/server-info` | those paths for API versions `2.0` and `3.0` |
    /// | any method | `GET` and `HEAD` |
    /// | prefixes behind `--static-prefix` | not included; add them with [`exact_for`](Self::exact_for) / [`prefix_for`](Self::prefix_for) |
    /// | percent-encoded, dot-segment, `//` and trailing-slash spellings (Flask decodes first) | authenticated |
    ///
    /// `/healthz` is not exempt here, unlike in MLflow.
    #[must_use]
    pub fn mlflow_defaults() -> Self {
        const READ: [Method; 2] = [Method::GET, Method::HEAD];
        let mut exemptions = Self::new();
        let mut add = |path: &str, prefix: bool| {
            exemptions.rules.push(Rule {
                path: path.into(),
                prefix,
                methods: Some(READ.to_vec().into_boxed_slice()),
            });
        };
        add("/static", true);
        add("/static-files", true);
        add("/favicon.ico", false);
        add("/health", false);
        add("/mlflow/server-info", false);
        for api in ["/api", "/ajax-api"] {
            for version in ["2.0", "3.0"] {
                add(&format!("{api}/{version}/mlflow/server-info"), false);
            }
        }
        exemptions
    }

    /// Whether there are no exemptions.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether a request with this method and `uri.path()` skips authentication.
    ///
    /// Always `false` for a path that is not canonical.
    #[must_use]
    pub fn is_exempt(&self, method: &Method, path: &str) -> bool {
        !self.rules.is_empty()
            && is_canonical_path(path)
            && self.rules.iter().any(|rule| rule.matches(method, path))
    }

    fn push(
        mut self,
        path: &str,
        prefix: bool,
        methods: Option<Box<[Method]>>,
    ) -> Result<Self, ExemptionError> {
        if !is_canonical_path(path) {
            return Err(ExemptionError::NotCanonical(path.into()));
        }
        if prefix && path == "/" {
            return Err(ExemptionError::ExemptsEverything);
        }
        self.rules.push(Rule {
            path: path.into(),
            prefix,
            methods,
        });
        Ok(self)
    }
}

fn collect_methods(
    methods: impl IntoIterator<Item = Method>,
) -> Result<Box<[Method]>, ExemptionError> {
    let methods: Box<[Method]> = methods.into_iter().collect();
    if methods.is_empty() {
        return Err(ExemptionError::NoMethods);
    }
    Ok(methods)
}

/// Whether `path` is in the canonical form that alone can be exempt.
///
/// Canonical: starts with `/`; is `/` or a sequence of `/segment`s where every segment is
/// non-empty, is not `.` or `..`, and consists of visible ASCII other than `%`, `\` and `;`.
#[must_use]
pub(crate) fn is_canonical_path(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    rest.split('/').all(|segment| {
        !segment.is_empty()
            && segment != "."
            && segment != ".."
            && segment
                .bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b'%' | b'\\' | b';'))
    })
}

/// A rejected exemption rule.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExemptionError {
    /// The configured path is not canonical, so no request path could ever match it.
    NotCanonical(Box<str>),
    /// A prefix of `/` would exempt every path; leave out the layer instead.
    ExemptsEverything,
    /// A method-limited rule was given no methods.
    NoMethods,
}

impl fmt::Display for ExemptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotCanonical(path) => write!(
                f,
                "exempt path {path:?} is not canonical (it must start with '/' and have no empty, \
                 '.' or '..' segments, '%', '\\', ';' or non-ASCII characters)"
            ),
            Self::ExemptsEverything => f.pad("the prefix \"/\" would exempt every path"),
            Self::NoMethods => f.pad("an exemption limited to methods needs at least one method"),
        }
    }
}

impl std::error::Error for ExemptionError {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn canonical_paths() {
        assert!(is_canonical_path("/api/2.0/mlflow/experiments/get"));
        assert!(is_canonical_path("/"));
        for path in [
            "", "*", "health", "/health/", "//health", "/a/./b", "/a/../b", "/%2e", "/a;b",
            "/a\\b", "/é",
        ] {
            assert!(!is_canonical_path(path), "{path}");
        }
    }

    #[test]
    fn deny_by_default() {
        let none = Exemptions::new();
        assert!(none.is_empty());
        assert!(!none.is_exempt(&Method::GET, "/health"));
        assert!(!none.is_exempt(&Method::GET, "/"));
    }

    #[test]
    fn segment_prefix_respects_boundaries() {
        let e = Exemptions::new().prefix("/static").unwrap();
        assert!(e.is_exempt(&Method::GET, "/static"));
        assert!(e.is_exempt(&Method::GET, "/static/a/b.js"));
        assert!(!e.is_exempt(&Method::GET, "/staticX"));
        assert!(!e.is_exempt(&Method::GET, "/static-files/a.js"));
        assert!(!e.is_exempt(&Method::GET, "/static/"));
        assert!(!e.is_exempt(&Method::GET, "/Static/a.js"));
        assert!(!e.is_exempt(&Method::GET, "/static/../api"));
        assert!(!e.is_exempt(&Method::GET, "/static/%2e%2e/api"));
        assert!(!e.is_exempt(&Method::GET, "/static/..%2fapi"));
        assert!(!e.is_exempt(&Method::GET, "/static\\..\\api"));
        assert!(!e.is_exempt(&Method::GET, "/static;/../api"));
    }

    #[test]
    fn exact_and_methods() {
        let e = Exemptions::new()
            .exact_for([Method::GET], "/health")
            .unwrap()
            .exact("/")
            .unwrap();
        assert!(e.is_exempt(&Method::GET, "/health"));
        assert!(!e.is_exempt(&Method::HEAD, "/health"));
        assert!(!e.is_exempt(&Method::GET, "/health/x"));
        assert!(!e.is_exempt(&Method::GET, "/healthz"));
        assert!(e.is_exempt(&Method::DELETE, "/"));
        assert!(!e.is_exempt(&Method::GET, "//"));
    }

    #[test]
    fn config_errors() {
        assert_eq!(
            Exemptions::new().exact("/health/").unwrap_err(),
            ExemptionError::NotCanonical("/health/".into())
        );
        assert!(matches!(
            Exemptions::new().prefix("static"),
            Err(ExemptionError::NotCanonical(_))
        ));
        assert_eq!(
            Exemptions::new().prefix("/").unwrap_err(),
            ExemptionError::ExemptsEverything
        );
        assert_eq!(
            Exemptions::new().exact_for([], "/health").unwrap_err(),
            ExemptionError::NoMethods
        );
        assert!(
            ExemptionError::NotCanonical("/a/../b".into())
                .to_string()
                .contains("not canonical")
        );
    }

    #[test]
    fn mlflow_defaults_are_tighter_than_mlflow() {
        let e = Exemptions::mlflow_defaults();
        for open in [
            "/health",
            "/favicon.ico",
            "/static-files/static/js/main.js",
            "/static/x.css",
            "/api/2.0/mlflow/server-info",
            "/ajax-api/3.0/mlflow/server-info",
            "/mlflow/server-info",
        ] {
            assert!(e.is_exempt(&Method::GET, open), "{open}");
            assert!(e.is_exempt(&Method::HEAD, open), "{open}");
            assert!(!e.is_exempt(&Method::POST, open), "{open}");
        }
        for closed in [
            "/healthz",
            "/health-anything",
            "/staticX",
            "/favicon.ico/x",
            "/api/2.0/mlflow/experiments/search",
            "/api/2.0/mlflow/server-info/x",
            "/version",
            "/",
        ] {
            assert!(!e.is_exempt(&Method::GET, closed), "{closed}");
        }
    }

    // ---- property test: no spelling of a protected path is exempt ----

    /// What a lenient router might do to a path before routing: percent-decode (repeatedly),
    /// treat `\` as `/`, drop `;params`, collapse `//`, remove dot segments, drop a trailing
    /// slash.
    fn normalise(path: &str) -> String {
        let mut s = path.to_owned();
        for _ in 0..3 {
            s = percent_decode(&s);
        }
        let s = s.replace('\\', "/");
        let mut out: Vec<&str> = Vec::new();
        for segment in s.split('/') {
            let segment = segment.split(';').next().unwrap_or("");
            match segment {
                "" | "." => {}
                ".." => {
                    out.pop();
                }
                other => out.push(other),
            }
        }
        format!("/{}", out.join("/"))
    }

    fn percent_decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let hex = |b: u8| (b as char).to_digit(16);
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    fn encode_byte(b: u8) -> String {
        format!("%{b:02X}")
    }

    /// Spellings of `path` that some decoder or normaliser maps back onto `path`.
    fn variants(path: &str, pick: usize) -> Vec<String> {
        let bytes = path.as_bytes();
        let at = 1 + pick % (bytes.len().max(2) - 1);
        let at = at.min(bytes.len() - 1);
        let mut v = Vec::new();
        let (head, tail) = path.split_at(at);
        // single and double percent-encoding of one character
        let c = bytes[at];
        v.push(format!("{head}{}{}", encode_byte(c), &tail[1..]));
        v.push(format!("{head}%25{:02X}{}", c, &tail[1..]));
        v.push(format!(
            "{head}{}{}",
            encode_byte(c).to_lowercase(),
            &tail[1..]
        ));
        // encoded slash instead of a real one
        v.push(path.replacen('/', "%2F", 2).replacen("%2F", "/", 1));
        // dot segments, plain and encoded
        v.push(format!("/./{}", &path[1..]));
        v.push(format!("/x/../{}", &path[1..]));
        v.push(format!("/%2e/{}", &path[1..]));
        v.push(format!("/x/%2e%2e/{}", &path[1..]));
        v.push(format!("/x/.%2E/{}", &path[1..]));
        // doubled slashes
        v.push(format!("/{path}"));
        v.push(path.replacen('/', "//", 2).replacen("//", "/", 1));
        // matrix parameters
        v.push(format!("{path};x=1"));
        v.push(format!("{head};{tail}"));
        // backslashes
        v.push(format!("\\{}", &path[1..]));
        v.push(path.replace('/', "\\"));
        // trailing slash
        v.push(format!("{path}/"));
        v
    }

    fn segment() -> impl Strategy<Value = String> {
        "[a-z0-9._-]{1,6}".prop_filter("not a dot segment", |s| s != "." && s != "..")
    }

    fn canonical_path() -> impl Strategy<Value = String> {
        proptest::collection::vec(segment(), 1..4).prop_map(|s| format!("/{}", s.join("/")))
    }

    fn exemptions() -> impl Strategy<Value = (Exemptions, Vec<String>)> {
        proptest::collection::vec((canonical_path(), any::<bool>()), 1..4).prop_map(|rules| {
            let mut e = Exemptions::new();
            let mut paths = Vec::new();
            for (path, prefix) in rules {
                e = if prefix {
                    e.prefix(&path)
                } else {
                    e.exact(&path)
                }
                .unwrap();
                paths.push(path);
            }
            (e, paths)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn no_spelling_of_a_protected_path_is_exempt(
            (e, _) in exemptions(),
            protected in canonical_path(),
            pick in any::<usize>(),
        ) {
            prop_assume!(!e.is_exempt(&Method::GET, &protected));
            for v in variants(&protected, pick) {
                // Any spelling a normaliser maps onto the protected path must be authenticated.
                if normalise(&v) == protected || normalise(&v) == normalise(&protected) {
                    prop_assert!(v == protected || !e.is_exempt(&Method::GET, &v), "{v:?} exempt");
                }
            }
        }

        #[test]
        fn only_canonical_fixed_points_are_exempt(
            (e, paths) in exemptions(),
            pick in any::<usize>(),
            which in any::<usize>(),
            upper in any::<bool>(),
        ) {
            let exempt = &paths[which % paths.len()];
            let mut spellings = variants(exempt, pick);
            if upper {
                spellings.push(exempt.to_uppercase());
            }
            for v in spellings {
                if e.is_exempt(&Method::GET, &v) {
                    // An exempt spelling must be one the router sees exactly as written.
                    prop_assert!(is_canonical_path(&v));
                    prop_assert_eq!(normalise(&v), v.clone());
                    prop_assert!(e.is_exempt(&Method::GET, &normalise(&v)));
                }
            }
        }

        #[test]
        fn arbitrary_strings_never_panic(path in "\\PC{0,40}") {
            let e = Exemptions::mlflow_defaults();
            let _ = e.is_exempt(&Method::GET, &path);
        }
    }
}
