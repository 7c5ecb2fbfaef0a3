//! [`ReturnPath`]: where to send a browser back to after sign-in, only ever a path on this
//! origin (no open redirect).
//!
//! The candidate comes from the client (the `rd` of a login link), so anything a browser, or
//! a server that decodes again, could turn into another origin is refused: `//evil.example`
//! and `/\evil.example` (browsers read both as a host), percent-encoded slashes and
//! backslashes, control characters and whitespace (browsers drop tabs and newlines, so
//! `/\t/evil.example` is `//evil.example`), encoded control characters (`%0d%0a`), dot
//! segments (`/../`, `/%2e%2e/`, `/..;/`), anything that does not start with `/` (so any
//! scheme), and anything longer than [`ReturnPath::MAX_LEN`]. A refused path falls back to
//! `/` ([`ReturnPath::default`]).
//!
//! ```
//! use tower_mlflow_auth::session::ReturnPath;
//!
//! let back = ReturnPath::parse("/#/experiments/1?searchFilter=metrics.rmse%20%3C%201").unwrap();
//! assert_eq!(back.as_str(), "/#/experiments/1?searchFilter=metrics.rmse%20%3C%201");
//!
//! for hostile in ["//evil.example", "/\\evil.example", "/%2F%2Fevil.example", "https://evil.example",
//!                 "javascript:alert(1)", "/\t/evil.example", "/%0d%0aSet-Cookie:x=1"] {
//!     assert_eq!(ReturnPath::parse(hostile), None, "{hostile:?}");
//! }
//! let rd = "//evil.example";
//! assert_eq!(ReturnPath::parse(rd).unwrap_or_default().as_str(), "/");
//! ```

use std::fmt;

/// A same-origin relative path (with an optional query and fragment) that is safe to send
/// as a `Location` after sign-in. Only [`parse`](Self::parse) makes one, so holding one
/// means the checks passed; [`Default`] is `/`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReturnPath(Box<str>);

impl ReturnPath {
    /// Longest return path accepted, in bytes (2 KiB).
    pub const MAX_LEN: usize = 2048;

    /// Accepts `candidate` when it is a same-origin relative path: it starts with `/`, its
    /// second byte is neither `/` nor `\`, it has no `\`, no ASCII control, whitespace or
    /// non-ASCII byte, none of `"`, `<`, `>` and `` ` `` (a browser percent-encodes them), no
    /// percent-encoded control character (`%00`–`%1F`, `%7F`) anywhere, and before the
    /// first `?`: no `//`, no `%2F` or `%5C` (any case) and no dot segment (`.`, `..`, also
    /// spelled `%2e`, or followed by `;params`). At most [`MAX_LEN`](Self::MAX_LEN) bytes.
    ///
    /// `candidate` is taken as is: percent-decode the query parameter it came from exactly
    /// once before.
    ///
    /// ```
    /// use tower_mlflow_auth::session::ReturnPath;
    ///
    /// assert!(ReturnPath::parse("/ajax-api/2.0/mlflow/experiments/search?max_results=10").is_some());
    /// assert!(ReturnPath::parse("/..;/admin").is_none());
    /// ```
    #[must_use]
    pub fn parse(candidate: &str) -> Option<Self> {
        let bytes = candidate.as_bytes();
        if bytes.len() > Self::MAX_LEN {
            return None;
        }
        match bytes {
            [b'/', b'/' | b'\\', ..] => return None,
            [b'/', ..] => {}
            _ => return None,
        }
        if !bytes.iter().copied().all(is_allowed_byte) {
            return None;
        }
        let path_end = candidate.find('?').unwrap_or(candidate.len());
        let path = &candidate[..path_end];
        if path.contains("//") || path.split('/').any(is_dot_segment) {
            return None;
        }
        if has_refused_escape(bytes, path_end) {
            return None;
        }
        Some(Self(candidate.into()))
    }

    /// The path, as accepted.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for ReturnPath {
    /// `/`, the fallback for a refused or missing return path.
    fn default() -> Self {
        Self("/".into())
    }
}

impl fmt::Display for ReturnPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl AsRef<str> for ReturnPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Visible ASCII, except `\` (browsers read it as `/`) and the characters a browser always
/// percent-encodes in a path, which would only matter to a page that embeds the path.
fn is_allowed_byte(byte: u8) -> bool {
    byte.is_ascii_graphic() && !matches!(byte, b'\\' | b'"' | b'<' | b'>' | b'`')
}

/// `.` or `..`, each dot possibly written `%2e`, possibly followed by `;params`: a browser
/// resolves the first two forms away and some servers (Tomcat) the third, so the path
/// checked would not be the path visited.
fn is_dot_segment(segment: &str) -> bool {
    let name = segment.split(';').next().unwrap_or(segment).as_bytes();
    let mut rest = name;
    let mut dots = 0;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix(b".") {
            rest = after;
        } else if rest
            .get(..3)
            .is_some_and(|dot| dot.eq_ignore_ascii_case(b"%2e"))
        {
            rest = &rest[3..];
        } else {
            return false;
        }
        dots += 1;
    }
    (1..=2).contains(&dots)
}

/// Whether a percent-escape decodes to a control character (anywhere: a server that
/// decodes again would see a CR LF or a NUL), or to `/` or `\` before `path_end` (a server
/// that decodes again would see `//`).
fn has_refused_escape(bytes: &[u8], path_end: usize) -> bool {
    bytes.windows(3).enumerate().any(|(at, window)| {
        let [b'%', high, low] = *window else {
            return false;
        };
        let (Some(high), Some(low)) = (hex_value(high), hex_value(low)) else {
            return false;
        };
        let decoded = high << 4 | low;
        decoded.is_ascii_control() || (at < path_end && matches!(decoded, b'/' | b'\\'))
    })
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|value| u8::try_from(value).ok())
}

#[cfg(test)]
mod tests {
    use super::ReturnPath;

    fn accepts(candidate: &str) {
        let parsed = ReturnPath::parse(candidate);
        assert_eq!(
            parsed.as_ref().map(ReturnPath::as_str),
            Some(candidate),
            "{candidate:?} should be accepted"
        );
    }

    fn refuses(candidate: &str) {
        assert_eq!(
            ReturnPath::parse(candidate),
            None,
            "{candidate:?} should be refused"
        );
    }

    #[test]
    fn same_origin_paths_are_accepted_as_is() {
        for path in [
            "/",
            "/#/experiments/1",
            "/#/experiments/1/runs/0a1b2c?o=1",
            "/ajax-api/2.0/mlflow/experiments/search?max_results=10",
            "/static-files/lib/notebook-trace-renderer/index.html",
            "/models/my%20model/versions/2",
            "/a/b/?next=//elsewhere&x=%2F%5c",
            "/.well-known/thing",
            "/a.../b",
            "/a/..b/c.",
            "/x:y/javascript:alert(1)",
            "/@evil.example",
            "/100%",
            "/%zz",
        ] {
            accepts(path);
        }
    }

    #[test]
    fn protocol_relative_and_backslash_paths_are_refused() {
        for path in [
            "//evil.example",
            "//",
            "///evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "\\/evil.example",
            "/a\\b",
            "/a//b",
        ] {
            refuses(path);
        }
    }

    #[test]
    fn encoded_slashes_and_backslashes_before_the_query_are_refused() {
        for path in [
            "/%2F%2Fevil.example",
            "/%2f%2fevil.example",
            "/%2Fevil.example",
            "/%5cevil.example",
            "/%5C%5Cevil.example",
            "/a%2Fb",
            "/%%2F",
            "/#%2F",
        ] {
            refuses(path);
        }
    }

    #[test]
    fn anything_without_a_leading_slash_is_refused_schemes_included() {
        for candidate in [
            "",
            "evil.example",
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            "http://evil.example",
            "https://evil.example/",
            "data:text/html,x",
            "?next=/",
            "#/experiments",
            ".",
            "./x",
            "../x",
        ] {
            refuses(candidate);
        }
    }

    #[test]
    fn whitespace_and_control_characters_are_refused() {
        for path in [
            "/ /evil.example",
            " /x",
            "/x ",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r\nSet-Cookie:x=1",
            "/x\0",
            "/\x0b/evil.example",
            "/\x0c",
            "/\x7f",
            "/\u{1b}[31m",
            "\t//evil.example",
            "/?q=a b",
        ] {
            refuses(path);
        }
    }

    #[test]
    fn encoded_control_characters_are_refused_anywhere() {
        for path in [
            "/%09/evil.example",
            "/%0d%0aSet-Cookie:x=1",
            "/%0D%0ALocation:%20//evil.example",
            "/x%00",
            "/?q=%0a",
            "/#%7f",
            "/%1b",
        ] {
            refuses(path);
        }
    }

    #[test]
    fn dot_segments_are_refused() {
        for path in [
            "/.",
            "/..",
            "/./",
            "/../evil",
            "/a/./b",
            "/a/../b",
            "/a/..",
            "/..;/admin",
            "/a/..;jsessionid=1/b",
            "/.;x",
            "/%2e%2e/admin",
            "/%2E./admin",
            "/.%2e",
            "/%2e",
            "/%2e%2e;/x",
        ] {
            refuses(path);
        }
    }

    #[test]
    fn non_ascii_is_refused() {
        for path in [
            "/é",
            "/\u{3000}evil.example",
            "/\u{ff0f}evil.example",
            "/\u{feff}",
        ] {
            refuses(path);
        }
    }

    #[test]
    fn characters_a_browser_encodes_are_refused() {
        for path in ["/\"onload=x", "/<script>", "/a>b", "/`x`"] {
            refuses(path);
        }
    }

    #[test]
    fn length_is_bounded() {
        let longest = format!("/{}", "a".repeat(ReturnPath::MAX_LEN - 1));
        accepts(&longest);
        refuses(&format!("{longest}a"));
        refuses(&format!("/?q={}", "a".repeat(ReturnPath::MAX_LEN)));
    }

    #[test]
    fn default_display_and_as_ref_are_the_path() {
        assert_eq!(ReturnPath::default().as_str(), "/");
        assert_eq!(
            ReturnPath::parse("//x").unwrap_or_default(),
            ReturnPath::default()
        );
        let path = ReturnPath::parse("/#/models").unwrap();
        assert_eq!(path.to_string(), "/#/models");
        assert_eq!(AsRef::<str>::as_ref(&path), "/#/models");
    }

    #[test]
    fn the_query_may_hold_slashes_and_encoded_slashes() {
        accepts("/?rd=//x");
        accepts("/login?next=%2F%2Fx");
        accepts("/?a=/../b");
    }
}
