use oauth2::{PkceCodeChallenge, PkceCodeVerifier};

use super::*;

fn keys(secret: &str) -> SessionKeys {
    SessionKeys::from_secret(&SecretString::from(secret)).unwrap()
}

fn key_a() -> SessionKeys {
    keys("the-first-session-secret-of-32-bytes-or-more")
}

fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000 + seconds)
}

fn begin(path: &str) -> Transaction {
    Transaction::begin(&ReturnPath::parse(path).unwrap()).unwrap()
}

/// A request carrying the `name=value` part of each `Set-Cookie`, as a browser sends them
/// back.
pub(crate) fn request_with(set_cookies: &[HeaderValue]) -> HeaderMap {
    let pairs: Vec<&str> = set_cookies
        .iter()
        .map(|h| h.to_str().unwrap().split(';').next().unwrap())
        .collect();
    let mut request = HeaderMap::new();
    request.append(COOKIE, HeaderValue::from_str(&pairs.join("; ")).unwrap());
    request
}

fn cookie_of(tx: &Transaction, keys: &SessionKeys, now: SystemTime) -> HeaderValue {
    tx.set_cookies(keys, &HeaderMap::new(), false, now)
        .unwrap()
        .remove(0)
}

#[test]
fn begin_makes_fresh_random_values() {
    let (a, b) = (begin("/"), begin("/#/experiments/1"));
    for value in [&a.state, &a.nonce, a.pkce_verifier.expose_secret()] {
        assert_eq!(value.len(), 43, "{value}");
        assert!(is_base64url(value), "{value}");
    }
    assert_ne!(a.state, b.state);
    assert_ne!(a.nonce, b.nonce);
    assert_ne!(a.state, a.nonce);
    assert_ne!(
        a.pkce_verifier.expose_secret(),
        b.pkce_verifier.expose_secret()
    );
    assert_eq!(b.return_to, "/#/experiments/1");
}

#[test]
fn pkce_challenge_is_s256() {
    // RFC 7636 appendix B.
    let mut tx = begin("/");
    tx.pkce_verifier = SecretString::from("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
    assert_eq!(
        tx.pkce_challenge(),
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    );
    // And the same as oauth2's, for a random verifier.
    let tx = begin("/");
    let verifier = PkceCodeVerifier::new(tx.pkce_verifier.expose_secret().to_owned());
    assert_eq!(
        tx.pkce_challenge(),
        PkceCodeChallenge::from_code_verifier_sha256(&verifier).as_str()
    );
}

#[test]
fn cookie_attributes() {
    let tx = begin("/");
    let name = format!("{}{}", Transaction::COOKIE_PREFIX, &tx.state[..22]);
    for (secure, suffix) in [(true, "; Secure"), (false, "")] {
        let headers = tx
            .set_cookies(&key_a(), &HeaderMap::new(), secure, at(0))
            .unwrap();
        let [header] = &headers[..] else {
            panic!("{headers:?}")
        };
        let header = header.to_str().unwrap();
        assert!(header.starts_with(&format!("{name}=v1.")), "{header}");
        assert!(
            header.ends_with(&format!(
                "; Path=/_gateway/; Max-Age=600; HttpOnly; SameSite=Lax{suffix}"
            )),
            "{header}"
        );
        assert!(
            !header.contains(tx.nonce.as_str())
                && !header.contains(tx.pkce_verifier.expose_secret())
        );
    }
    assert!(Transaction::is_own_cookie(&name));
    assert!(!Transaction::is_own_cookie("mlflow_gateway_session"));
}

#[test]
fn round_trip() {
    let tx = begin("/ajax-api/2.0/mlflow/experiments/search?max_results=10");
    let request = request_with(&[cookie_of(&tx, &key_a(), at(0))]);
    let taken = Transaction::take(&key_a(), &request, &tx.state, at(599)).unwrap();
    assert_eq!(taken.state, tx.state);
    assert_eq!(taken.nonce, tx.nonce);
    assert_eq!(
        taken.pkce_verifier.expose_secret(),
        tx.pkce_verifier.expose_secret()
    );
    assert_eq!(taken.return_to, tx.return_to);
}

#[test]
fn the_right_cookie_among_several() {
    let (a, b) = (begin("/a"), begin("/b"));
    let mut request = request_with(&[
        cookie_of(&a, &key_a(), at(0)),
        cookie_of(&b, &key_a(), at(1)),
    ]);
    request.append(COOKIE, HeaderValue::from_static("theme=dark"));
    assert_eq!(
        Transaction::take(&key_a(), &request, &b.state, at(2))
            .unwrap()
            .return_to,
        "/b"
    );
    assert_eq!(
        Transaction::take(&key_a(), &request, &a.state, at(2))
            .unwrap()
            .return_to,
        "/a"
    );
}

#[test]
fn foreign_or_malformed_state_is_refused() {
    let tx = begin("/");
    let request = request_with(&[cookie_of(&tx, &key_a(), at(0))]);
    // Another login's state.
    assert!(Transaction::take(&key_a(), &request, &begin("/").state, at(1)).is_none());
    // Same cookie name (first 22 characters), another state: the sealed state decides.
    let mut forged = tx.state[..22].to_owned();
    forged.push_str(&begin("/").state[22..]);
    assert_ne!(forged, tx.state);
    assert!(Transaction::take(&key_a(), &request, &forged, at(1)).is_none());
    // Not 43 base64url characters: never used in a cookie name.
    for state in [
        "",
        "short",
        &tx.state[..42],
        &format!("{}=", &tx.state[..42]),
        &format!("{};", &tx.state[..42]),
        &format!("{}x", tx.state),
    ] {
        assert!(
            Transaction::take(&key_a(), &request, state, at(1)).is_none(),
            "{state:?}"
        );
        assert!(
            Transaction::removal_cookie(state, true).is_none(),
            "{state:?}"
        );
    }
}

#[test]
fn tampered_expired_or_other_key_cookie_is_refused() {
    let tx = begin("/");
    let cookie = cookie_of(&tx, &key_a(), at(0));
    let request = request_with(std::slice::from_ref(&cookie));
    assert!(
        Transaction::take(&key_a(), &request, &tx.state, at(600)).is_none(),
        "expired"
    );
    let other = keys("another-session-secret-of-32-bytes-or-more");
    assert!(
        Transaction::take(&other, &request, &tx.state, at(1)).is_none(),
        "other key"
    );
    // Rotation: the old key still opens it.
    let rotated = keys(
        "another-session-secret-of-32-bytes-or-more\nthe-first-session-secret-of-32-bytes-or-more",
    );
    assert!(
        Transaction::take(&rotated, &request, &tx.state, at(1)).is_some(),
        "rotated"
    );

    let text = cookie.to_str().unwrap();
    let pair = text.split(';').next().unwrap();
    let flip = pair.len() - 5;
    let replacement = if &pair[flip..=flip] == "A" { "B" } else { "A" };
    let tampered = format!("{}{replacement}{}", &pair[..flip], &pair[flip + 1..]);
    let mut request = HeaderMap::new();
    request.insert(COOKIE, HeaderValue::from_str(&tampered).unwrap());
    assert!(
        Transaction::take(&key_a(), &request, &tx.state, at(1)).is_none(),
        "tampered"
    );
}

#[test]
fn removal_cookie_matches_the_cookie() {
    let tx = begin("/");
    let removal = Transaction::removal_cookie(&tx.state, true).unwrap();
    assert_eq!(
        removal.to_str().unwrap(),
        format!(
            "{}{}=; Path=/_gateway/; Max-Age=0; HttpOnly; SameSite=Lax; Secure",
            Transaction::COOKIE_PREFIX,
            &tx.state[..22]
        )
    );
    let plain = Transaction::removal_cookie(&tx.state, false).unwrap();
    assert!(!plain.to_str().unwrap().contains("Secure"));
}

#[test]
fn more_than_max_open_removes_the_oldest_and_the_unusable() {
    let open: Vec<Transaction> = (0..Transaction::MAX_OPEN).map(|_| begin("/")).collect();
    let mut cookies: Vec<HeaderValue> = open
        .iter()
        .enumerate()
        .map(|(i, tx)| cookie_of(tx, &key_a(), at(10 * i as u64)))
        .collect();
    // A transaction cookie that no longer opens, and an unrelated cookie.
    let junk_name = format!("{}{}", Transaction::COOKIE_PREFIX, &begin("/").state[..22]);
    cookies.push(HeaderValue::from_str(&format!("{junk_name}=v1.junk")).unwrap());
    cookies.push(HeaderValue::from_static("theme=dark"));
    let request = request_with(&cookies);

    let new = begin("/");
    let headers = new.set_cookies(&key_a(), &request, true, at(100)).unwrap();
    let names: Vec<&str> = headers
        .iter()
        .map(|h| h.to_str().unwrap().split('=').next().unwrap())
        .collect();
    let oldest = format!("{}{}", Transaction::COOKIE_PREFIX, &open[0].state[..22]);
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names[0].ends_with(&new.state[..22]));
    assert!(
        names.contains(&junk_name.as_str()) && names.contains(&oldest.as_str()),
        "{names:?}"
    );
    assert!(
        headers[1..].iter().all(|h| h
            .to_str()
            .unwrap()
            .contains("=; Path=/_gateway/; Max-Age=0;")),
        "a removal has the path of the cookie: {headers:?}"
    );

    // With room left, nothing is removed.
    let request = request_with(&cookies[1..Transaction::MAX_OPEN]);
    assert_eq!(
        new.set_cookies(&key_a(), &request, true, at(100))
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn within_one_second_the_first_cookie_sent_is_the_oldest() {
    let open: Vec<Transaction> = (0..Transaction::MAX_OPEN).map(|_| begin("/")).collect();
    // Browsers send the cookie set first first.
    let cookies: Vec<HeaderValue> = open
        .iter()
        .map(|tx| cookie_of(tx, &key_a(), at(5)))
        .collect();
    let headers = begin("/")
        .set_cookies(&key_a(), &request_with(&cookies), false, at(5))
        .unwrap();
    let oldest = format!("{}{}", Transaction::COOKIE_PREFIX, &open[0].state[..22]);
    assert_eq!(headers.len(), 2, "{headers:?}");
    assert_eq!(
        headers[1].to_str().unwrap(),
        format!("{oldest}=; Path=/_gateway/; Max-Age=0; HttpOnly; SameSite=Lax")
    );
}

#[test]
fn a_state_is_used_once() {
    let used = UsedStates::new();
    let state = begin("/").state;
    assert!(used.first_use(&state, at(0)));
    assert!(!used.first_use(&state, at(1)), "replay");
    assert!(!used.first_use(&state, at(599)), "replay");
    assert!(used.first_use(&begin("/").state, at(2)));
    // Past the lifetime the cookie has expired; the entry is dropped.
    assert!(used.first_use(&state, at(600)));
    assert_eq!(used.len(), 2);
    assert!(format!("{used:?}").contains("remembered: 2"));
}

#[test]
fn used_states_are_bounded() {
    let used = UsedStates::new();
    let states: Vec<String> = (0..UsedStates::MAX_ENTRIES + 10)
        .map(|i| format!("state-{i}"))
        .collect();
    for state in &states {
        assert!(used.first_use(state, at(0)));
    }
    assert_eq!(used.len(), UsedStates::MAX_ENTRIES);
    // The newest are still refused; the oldest were forgotten.
    assert!(!used.first_use(states.last().unwrap(), at(1)));
    assert!(used.first_use(&states[0], at(1)));
    assert_eq!(used.len(), UsedStates::MAX_ENTRIES);
}
