use http::{HeaderName, header::AUTHORIZATION};
use secrecy::SecretString;

use super::*;

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

fn template(name: &str, mode: HeaderMode, format: SecretFormat) -> HeaderTemplate {
    HeaderTemplate::new(
        HeaderName::from_bytes(name.as_bytes()).unwrap(),
        mode,
        format,
    )
    .unwrap()
}

#[test]
fn bearer_from_token() {
    let value = HeaderTemplate::bearer()
        .render(&secret(" tok-123\n"))
        .unwrap();
    assert_eq!(value, "Bearer tok-123");
    assert!(value.is_sensitive());
}

#[test]
fn bearer_token_with_colon_stays_a_token() {
    let value = HeaderTemplate::bearer()
        .render(&secret("tok:en:with:colons"))
        .unwrap();
    assert_eq!(value, "Bearer tok:en:with:colons");
}

#[test]
fn basic_from_user_pass_splits_at_first_colon() {
    let value = HeaderTemplate::basic()
        .render(&secret("tok:en:with"))
        .unwrap();
    // base64("tok:en:with")
    assert_eq!(value, "Basic dG9rOmVuOndpdGg=");
}

#[test]
fn basic_from_json_pair() {
    let t = template("authorization", HeaderMode::Basic, SecretFormat::json());
    let value = t
        .render(&secret(
            r#"{"username":"admin","password":"password1234","x":1}"#,
        ))
        .unwrap();
    assert_eq!(value, "Basic YWRtaW46cGFzc3dvcmQxMjM0");
}

#[test]
fn bearer_from_json_with_custom_key() {
    let t = template(
        "authorization",
        HeaderMode::Bearer,
        SecretFormat::Json(JsonKeys::default().token("api_key")),
    );
    assert_eq!(
        t.render(&secret(r#"{"api_key":"k1"}"#)).unwrap(),
        "Bearer k1"
    );
}

#[test]
fn raw_custom_header() {
    let t = HeaderTemplate::raw(HeaderName::from_static("x-api-key"));
    assert_eq!(t.name(), "x-api-key");
    assert_eq!(t.render(&secret("k:1")).unwrap(), "k:1");
}

#[test]
fn custom_header_with_scheme() {
    let t = template(
        "x-auth",
        HeaderMode::Scheme("Token".into()),
        SecretFormat::Token,
    );
    assert_eq!(t.render(&secret("abc")).unwrap(), "Token abc");
}

#[test]
fn basic_in_custom_header() {
    let t = template("x-auth", HeaderMode::Basic, SecretFormat::UserPass);
    assert_eq!(t.render(&secret("a:b")).unwrap(), "Basic YTpi");
}

#[test]
fn build_rejects_basic_from_token() {
    let err = HeaderTemplate::new(AUTHORIZATION, HeaderMode::Basic, SecretFormat::Token);
    assert_eq!(err, Err(TemplateError::BasicNeedsPair));
}

#[test]
fn build_rejects_bearer_from_user_pass() {
    let err = HeaderTemplate::new(AUTHORIZATION, HeaderMode::Bearer, SecretFormat::UserPass);
    assert_eq!(err, Err(TemplateError::ModeNeedsToken));
}

#[test]
fn build_rejects_bad_scheme_and_empty_key() {
    for scheme in ["", "Bad Scheme", "Tok\n"] {
        let err = HeaderTemplate::new(
            AUTHORIZATION,
            HeaderMode::Scheme(scheme.into()),
            SecretFormat::Token,
        );
        assert_eq!(err, Err(TemplateError::InvalidScheme), "{scheme:?}");
    }
    let err = HeaderTemplate::new(
        AUTHORIZATION,
        HeaderMode::Bearer,
        SecretFormat::Json(JsonKeys::default().token("")),
    );
    assert_eq!(err, Err(TemplateError::EmptyJsonKey));
}

#[test]
fn json_errors_name_keys_not_values() {
    let bearer = template("authorization", HeaderMode::Bearer, SecretFormat::json());
    let cases = [
        (r#"{"username":"u","password":"hunter2pw"}"#, "\"token\""),
        (r#"{"token":12345}"#, "\"token\""),
        (r#"{"token":""}"#, "\"token\""),
        (r#""hunter2pw""#, "not a JSON object"),
        ("hunter2pw", "not a JSON object"),
        (r#"{"token":"hunter2pw"#, "not a JSON object"),
    ];
    for (raw, expected) in cases {
        let err = bearer.render(&secret(raw)).unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(text.contains(expected), "{raw}: {text}");
        assert!(
            !text.contains("hunter2") && !text.contains("12345"),
            "{text}"
        );
    }
    let basic = template("authorization", HeaderMode::Basic, SecretFormat::json());
    let err = basic
        .render(&secret(r#"{"token":"hunter2pw"}"#))
        .unwrap_err();
    assert!(matches!(err, SecretFormatError::MissingPair { .. }));
}

#[test]
fn user_pass_errors() {
    let basic = HeaderTemplate::basic();
    assert_eq!(
        basic.render(&secret("hunter2")),
        Err(SecretFormatError::NoColon)
    );
    assert_eq!(
        basic.render(&secret(":pw")),
        Err(SecretFormatError::EmptyUsername)
    );
    assert_eq!(basic.render(&secret("  ")), Err(SecretFormatError::Empty));
    let json = template("authorization", HeaderMode::Basic, SecretFormat::json());
    assert_eq!(
        json.render(&secret(r#"{"username":"a:b","password":"p"}"#)),
        Err(SecretFormatError::ColonInUsername)
    );
}

#[test]
fn control_characters_are_rejected_without_echo() {
    let err = HeaderTemplate::bearer()
        .render(&secret("hunter2\nX-Evil: 1"))
        .unwrap_err();
    assert_eq!(err, SecretFormatError::InvalidHeaderValue);
    assert!(!err.to_string().contains("hunter2"));
}
