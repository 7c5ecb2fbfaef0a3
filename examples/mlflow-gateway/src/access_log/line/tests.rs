use std::{
    io,
    sync::{Arc, Mutex},
    time::Duration,
};

use super::*;

/// What tracing-subscriber's text (`json == false`) or JSON format writes for the events
/// `emit` sends.
fn formatted(json: bool, emit: impl Fn()) -> String {
    let captured = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&captured);
    let builder = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || Capture(Arc::clone(&sink)));
    if json {
        let subscriber = builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
    } else {
        tracing::subscriber::with_default(builder.finish(), emit);
    }
    let text = captured.lock().unwrap().clone();
    String::from_utf8(text).unwrap()
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl io::Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn entries() -> Vec<Entry<'static>> {
    let at = SystemTime::UNIX_EPOCH + Duration::from_micros(1_796_137_463_123_456);
    let entry = Entry {
        at,
        client: IpAddr::from([203, 0, 113, 7]),
        method: "GET",
        path: "/api/2.0/mlflow/runs/get",
        version: Version::HTTP_11,
        status: 200,
        bytes: Some(512),
        duration_us: 125,
        user: "alice",
        authenticator: "htpasswd",
        reason: "-",
    };
    vec![
        Entry { ..entry },
        Entry {
            client: "2001:db8::1".parse().unwrap(),
            method: "PROPFIND",
            // Escaped: the quote, the backslash, the control characters; not the printable
            // non-ASCII one.
            path: "/a\"b\\c\u{1b}d\u{e9}\u{7f}",
            version: Version::HTTP_2,
            status: 401,
            bytes: None,
            duration_us: 1000,
            user: "-",
            authenticator: "-",
            reason: "invalid basic credentials",
            ..entry
        },
        Entry {
            version: Version::HTTP_10,
            status: 403,
            bytes: Some(0),
            duration_us: 12_345_678,
            user: "zoë \"the admin\"\t\n",
            authenticator: "session",
            reason: "forbidden by policy",
            ..entry
        },
        Entry {
            at: SystemTime::UNIX_EPOCH,
            duration_us: 1,
            ..entry
        },
        Entry {
            client: IpAddr::from([10, 0, 0, 255]),
            duration_us: 0,
            ..entry
        },
        Entry {
            client: "::ffff:192.0.2.1".parse().unwrap(),
            duration_us: 100_000,
            ..entry
        },
        Entry {
            duration_us: 99_999_990,
            ..entry
        },
        Entry {
            duration_us: 1_010,
            ..entry
        },
    ]
}

/// Our lines and the formatter's, with the formatter's timestamp (the time it ran) replaced
/// by ours.
fn compare(json: bool, prefix: usize, write: impl Fn(&Entry<'static>, &mut Vec<u8>)) {
    let entries = entries();
    let theirs = formatted(json, || entries.iter().for_each(Entry::event));
    let theirs: Vec<&str> = theirs.lines().collect();
    assert_eq!(theirs.len(), entries.len(), "{theirs:?}");
    for (entry, theirs) in entries.iter().zip(theirs) {
        let mut ours = Vec::new();
        write(entry, &mut ours);
        let ours = String::from_utf8(ours).unwrap();
        assert!(ours.ends_with('\n'));
        let ours = ours.trim_end_matches('\n');
        let stamp = prefix..prefix + 27;
        let shape = |time: &str| time.replace(|c: char| c.is_ascii_digit(), "0");
        assert_eq!(shape(&theirs[stamp.clone()]), "0000-00-00T00:00:00.000000Z");
        assert_eq!(&ours[..prefix], &theirs[..prefix]);
        assert_eq!(&ours[prefix + 27..], &theirs[prefix + 27..]);
        assert_eq!(
            &ours[stamp],
            std::str::from_utf8(&rfc3339_micros(entry.at)).unwrap()
        );
    }
}

#[test]
fn text_lines_are_what_the_default_format_writes_for_the_event() {
    compare(false, 0, Entry::write_text);
    let mut line = Vec::new();
    entries()[1].write_text(&mut line);
    let line = String::from_utf8(line).unwrap();
    assert!(
        line.contains(r#" path="/a\"b\\c\u{1b}dé\u{7f}" "#),
        "{line}"
    );
    assert!(!line.contains("bytes="), "{line}");
    assert!(line.contains(" duration_ms=1.0 "), "{line}");
}

#[test]
fn json_lines_are_what_the_json_format_writes_for_the_event() {
    compare(true, r#"{"timestamp":""#.len(), Entry::write_json);
    for entry in entries() {
        let mut line = Vec::new();
        entry.write_json(&mut line);
        let value: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(value["path"], entry.path);
        assert_eq!(value["user"], entry.user);
        assert_eq!(value["status"], entry.status);
        assert_eq!(value["duration_ms"], entry.duration_us as f64 / 1000.0);
        assert_eq!(value["client"], entry.client.to_string());
        assert_eq!(
            value.get("bytes").and_then(serde_json::Value::as_u64),
            entry.bytes
        );
    }
}

#[test]
fn times_are_rfc3339_utc() {
    let at = |secs, millis| {
        let text = rfc3339(
            SystemTime::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis),
        );
        String::from_utf8(text.to_vec()).unwrap()
    };
    assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
    // 2024-02-29 (a leap day) 23:59:59.999.
    assert_eq!(at(1_709_251_199, 999), "2024-02-29T23:59:59.999Z");
    assert_eq!(at(1_798_761_600, 5), "2027-01-01T00:00:00.005Z");
    let micros =
        rfc3339_micros(SystemTime::UNIX_EPOCH + Duration::from_micros(1_709_251_199_999_999));
    assert_eq!(&micros, b"2024-02-29T23:59:59.999999Z");
}

#[test]
fn durations_are_written_as_debug_and_serde_json_write_the_f64() {
    let big = [
        9_007_199_254_740,
        86_400_000_000,
        3_600_000_001,
        u64::from(u32::MAX),
    ];
    for micros in (0..300_000).chain(big) {
        let mut ours = Vec::new();
        write_millis(&mut ours, micros);
        let millis = micros as f64 / 1000.0;
        assert_eq!(std::str::from_utf8(&ours).unwrap(), format!("{millis:?}"));
        assert_eq!(ours, serde_json::to_vec(&millis).unwrap());
    }
}

#[test]
fn addresses_are_written_as_display_writes_them() {
    for ip in [
        "0.0.0.0",
        "255.255.255.255",
        "10.0.20.3",
        "::1",
        "2001:db8::8:800:200c:417a",
    ] {
        let ip: IpAddr = ip.parse().unwrap();
        let mut ours = Vec::new();
        write_ip(&mut ours, ip);
        assert_eq!(String::from_utf8(ours).unwrap(), ip.to_string());
    }
}
