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

use crate::{
    forwarded::write_ip,
    logging::{AccessSink, LogFormat},
};

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
    /// Whole microseconds: the clock's noise below that is no information.
    pub(super) duration_us: u64,
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
            duration_ms = self.duration_us as f64 / 1000.0,
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
        out.extend_from_slice(b"\" client=");
        write_ip(out, self.client);
        text_field(out, " method=", self.method);
        text_field(out, " path=", self.path);
        text_field(out, " version=", version(self.version));
        out.extend_from_slice(b" status=");
        write_u64(out, self.status.into());
        if let Some(bytes) = self.bytes {
            out.extend_from_slice(b" bytes=");
            write_u64(out, bytes);
        }
        out.extend_from_slice(b" duration_ms=");
        write_millis(out, self.duration_us);
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
        out.extend_from_slice(b"\",\"client\":\"");
        write_ip(out, self.client);
        out.push(b'"');
        json_field(out, ",\"method\":", self.method);
        json_field(out, ",\"path\":", self.path);
        json_field(out, ",\"version\":", version(self.version));
        out.extend_from_slice(b",\"status\":");
        write_u64(out, self.status.into());
        if let Some(bytes) = self.bytes {
            out.extend_from_slice(b",\"bytes\":");
            write_u64(out, bytes);
        }
        out.extend_from_slice(b",\"duration_ms\":");
        write_millis(out, self.duration_us);
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

/// `name` then `value` as a JSON string, escaped by serde_json as the JSON format does; a
/// value with nothing to escape (no `"`, `\` or control character; serde_json leaves other
/// UTF-8 as it is) is copied.
fn json_field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    if value
        .bytes()
        .all(|byte| byte >= b' ' && byte != b'"' && byte != b'\\')
    {
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, value);
    }
}

/// `value` in decimal.
fn write_u64(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0_u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        // `value % 10` is a digit.
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// `micros` in milliseconds as the shortest decimal that reads back as
/// `micros as f64 / 1000.0`, which is what both `Debug` for `f64` and serde_json (ryu) write
/// (`0.125`, `1.0`, `12345.678`): below 2^53 / 1000 ms no shorter decimal names the same
/// double, and neither switches to an exponent from 0.001 to 10^16.
fn write_millis(out: &mut Vec<u8>, micros: u64) {
    write_u64(out, micros / 1000);
    out.push(b'.');
    let fraction = micros % 1000;
    if fraction == 0 {
        out.push(b'0');
        return;
    }
    let digits =
        [fraction / 100, fraction / 10 % 10, fraction % 10].map(|digit| b'0' + digit as u8);
    let len = if digits[2] != b'0' {
        3
    } else if digits[1] != b'0' {
        2
    } else {
        1
    };
    out.extend_from_slice(&digits[..len]);
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
