//! One access line, written straight into the log buffer.
//!
//! Through tracing-subscriber's formatters a line cost 1.6 µs (text) and 3.1 µs (JSON) on
//! the bench machine, as much as the rest of a cached request: a dynamic visitor per field,
//! `Debug` through `fmt::write` for every number, a JSON map built and serialized. When
//! [`logging::init`](crate::logging::init) installed the subscriber, [`Entry::emit`] writes the line here instead,
//! byte for byte as that subscriber's format would write the same event (the tests compare
//! them), into the buffer [`AccessSink`] shares with it. In any other program (an embedding
//! one, the tests) it sends that event, so a subscriber of its own sees every access line.

use std::{io::Write as _, net::IpAddr, time::SystemTime};

use http::Version;

use crate::logging::{AccessSink, LogFormat};

use super::TARGET;

/// The fields of an access line; see the [module docs](self).
#[derive(Debug)]
pub(super) struct Entry<'a> {
    /// When the response head was ready.
    pub(super) at: SystemTime,
    pub(super) client: IpAddr,
    pub(super) method: &'a str,
    /// Without the query string.
    pub(super) path: &'a str,
    pub(super) version: Version,
    pub(super) status: u16,
    pub(super) bytes: Option<u64>,
    pub(super) duration_ms: f64,
    pub(super) user: &'a str,
    pub(super) authenticator: &'a str,
    pub(super) reason: &'a str,
}

impl Entry<'_> {
    /// Writes the line: into the buffer of [`init`](crate::logging::init)'s subscriber if it is the one
    /// installed, else as an INFO event on [`TARGET`].
    pub(super) fn emit(&self) {
        match AccessSink::installed() {
            Some(sink) => sink.append(|out| match sink.format() {
                LogFormat::Text => self.write_text(out),
                LogFormat::Json => self.write_json(out),
            }),
            None => self.event(),
        }
    }

    fn event(&self) {
        let time = rfc3339(self.at);
        tracing::info!(
            target: TARGET,
            // ASCII digits and punctuation only.
            time = std::str::from_utf8(&time).unwrap_or("-"),
            client = %self.client,
            method = self.method,
            path = self.path,
            version = version(self.version),
            status = self.status,
            bytes = self.bytes,
            duration_ms = self.duration_ms,
            user = self.user,
            authenticator = self.authenticator,
            reason = self.reason,
        );
    }

    /// As tracing-subscriber's default format (`Full`, no ANSI) writes [`Self::event`].
    fn write_text(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&rfc3339_micros(self.at));
        out.extend_from_slice(b"  INFO ");
        out.extend_from_slice(TARGET.as_bytes());
        out.extend_from_slice(b": time=\"");
        out.extend_from_slice(&rfc3339(self.at));
        // Writing to a Vec cannot fail.
        let _ = write!(out, "\" client={}", self.client);
        text_field(out, " method=", self.method);
        text_field(out, " path=", self.path);
        text_field(out, " version=", version(self.version));
        let _ = write!(out, " status={}", self.status);
        if let Some(bytes) = self.bytes {
            let _ = write!(out, " bytes={bytes}");
        }
        let _ = write!(out, " duration_ms={:?}", self.duration_ms);
        text_field(out, " user=", self.user);
        text_field(out, " authenticator=", self.authenticator);
        text_field(out, " reason=", self.reason);
        out.push(b'\n');
    }

    /// As tracing-subscriber's JSON format, with `flatten_event(true)` and no spans, writes
    /// [`Self::event`].
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"timestamp\":\"");
        out.extend_from_slice(&rfc3339_micros(self.at));
        out.extend_from_slice(b"\",\"level\":\"INFO\",\"time\":\"");
        out.extend_from_slice(&rfc3339(self.at));
        let _ = write!(out, "\",\"client\":\"{}\"", self.client);
        json_field(out, ",\"method\":", self.method);
        json_field(out, ",\"path\":", self.path);
        json_field(out, ",\"version\":", version(self.version));
        let _ = write!(out, ",\"status\":{}", self.status);
        if let Some(bytes) = self.bytes {
            let _ = write!(out, ",\"bytes\":{bytes}");
        }
        out.extend_from_slice(b",\"duration_ms\":");
        // serde_json's own number format (ryu), as the JSON formatter writes it.
        let _ = serde_json::to_writer(&mut *out, &self.duration_ms);
        json_field(out, ",\"user\":", self.user);
        json_field(out, ",\"authenticator\":", self.authenticator);
        json_field(out, ",\"reason\":", self.reason);
        out.extend_from_slice(b",\"target\":\"");
        out.extend_from_slice(TARGET.as_bytes());
        out.extend_from_slice(b"\"}\n");
    }
}

/// `name` then `value` as `Debug` writes a `str`, the way the default format writes a string
/// field; printable ASCII without `"` and `\` needs no escape, so it is copied.
fn text_field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    let plain = value
        .bytes()
        .all(|byte| (b' '..=b'~').contains(&byte) && byte != b'"' && byte != b'\\');
    if plain {
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
    } else {
        let _ = write!(out, "{value:?}");
    }
}

/// `name` then `value` as a JSON string, escaped by serde_json as the JSON format does.
fn json_field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    let _ = serde_json::to_writer(&mut *out, value);
}

fn version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/?",
    }
}

/// A UTC time as RFC 3339 with milliseconds, `2026-12-01T13:04:23.123Z`.
fn rfc3339(at: SystemTime) -> [u8; 24] {
    let micros = rfc3339_micros(at);
    let mut text = [b'Z'; 24];
    text[..23].copy_from_slice(&micros[..23]);
    text
}

/// A UTC time as RFC 3339 with microseconds, `2026-12-01T13:04:23.123456Z` (tracing's own
/// timestamps), digit by digit into an array: `write!` with widths cost as much as the rest
/// of the line. Past the year 9999 only its last four digits are kept.
fn rfc3339_micros(at: SystemTime) -> [u8; 27] {
    let since_epoch = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (days, of_day) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |start: usize, width: usize, mut value: u64| {
        for digit in text[start..start + width].iter_mut().rev() {
            // `value % 10` is a digit.
            *digit = b"0123456789"[(value % 10) as usize];
            value /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, of_day / 3600);
    put(14, 2, of_day / 60 % 60);
    put(17, 2, of_day % 60);
    put(20, 6, u64::from(since_epoch.subsec_micros()));
    text
}

/// (year, month, day) of `days` since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests;
