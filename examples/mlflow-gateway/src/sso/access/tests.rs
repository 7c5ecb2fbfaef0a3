use serde_json::{Value, json};

use super::*;
use crate::sso::provider::tests::id_token_claims;

fn config() -> SsoConfig {
    SsoConfig::new(
        "https://idp.example.com",
        "gateway",
        "/run/secrets/oidc",
        "https://mlflow.example.com/_gateway/callback"
            .parse()
            .unwrap(),
        "/run/secrets/session",
    )
}

fn rules(edit: impl FnOnce(&mut SsoConfig)) -> AccessRules {
    let mut config = config();
    edit(&mut config);
    AccessRules::new(&config)
}

fn alice() -> Value {
    json!({
        "email": "Alice@Example.com", "email_verified": true,
        "groups": ["mlflow-users", "mlflow-admins"], "preferred_username": "alice",
    })
}

/// An admin with a verified email and two groups.
fn identity() -> Identity {
    Identity {
        subject: "s-1".into(),
        user: "alice@example.com".into(),
        email: Some("alice@example.com".into()),
        groups: vec!["mlflow-users".into(), "mlflow-admins".into()],
        admin: true,
    }
}

async fn admit(rules: &AccessRules, claims: Value) -> Result<Identity, Denied> {
    rules.admit(&id_token_claims(claims).await)
}

#[tokio::test]
async fn everyone_is_admitted_without_allow_lists() {
    let admitted = admit(&rules(|_| {}), alice()).await.unwrap();
    assert_eq!(
        admitted,
        Identity {
            subject: "user-1".into(),
            user: "Alice@Example.com".into(),
            email: Some("Alice@Example.com".into()),
            admin: false,
            ..identity()
        }
    );
}

#[tokio::test]
async fn the_email_counts_only_verified_with_one_at() {
    let rules = rules(|_| {});
    let unverified = json!({"email": "carol@example.com", "email_verified": false});
    assert_eq!(
        admit(&rules, unverified).await,
        Err(Denied::EmailUnverified)
    );
    let missing_flag = json!({"email": "carol@example.com"});
    assert_eq!(
        admit(&rules, missing_flag).await,
        Err(Denied::EmailUnverified)
    );
    let two_ats = json!({"email": "a@b@example.com", "email_verified": true});
    assert_eq!(admit(&rules, two_ats).await, Err(Denied::NoUser));
    let no_at = json!({"email": "alice", "email_verified": true});
    assert_eq!(admit(&rules, no_at).await, Err(Denied::NoUser));
    assert_eq!(admit(&rules, json!({})).await, Err(Denied::NoUser));
    // "true" as a string, as some issuers send it.
    let string_flag = json!({"email": "dave@example.com", "email_verified": "true"});
    assert_eq!(
        admit(&rules, string_flag).await.unwrap().user,
        "dave@example.com"
    );
}

#[tokio::test]
async fn another_user_claim_may_be_any_string_claim() {
    let by_name = rules(|c| c.user_claim = "preferred_username".into());
    let identity = admit(&by_name, alice()).await.unwrap();
    assert_eq!(identity.user, "alice");
    assert_eq!(identity.email.as_deref(), Some("Alice@Example.com"));

    // An unverified email is dropped, not fatal, when it is not the user claim.
    let mut claims = alice();
    claims["email_verified"] = json!(false);
    let identity = admit(&by_name, claims).await.unwrap();
    assert_eq!((identity.user.as_str(), identity.email), ("alice", None));

    let by_sub = rules(|c| c.user_claim = "sub".into());
    assert_eq!(admit(&by_sub, json!({})).await.unwrap().user, "user-1");
    let missing = rules(|c| c.user_claim = "upn".into());
    assert_eq!(admit(&missing, alice()).await, Err(Denied::NoUser));
    let not_a_string = rules(|c| c.user_claim = "groups".into());
    assert_eq!(admit(&not_a_string, alice()).await, Err(Denied::NoUser));
}

#[tokio::test]
async fn the_user_must_be_a_short_header_value() {
    let rules = rules(|c| c.user_claim = "preferred_username".into());
    for bad in [
        "",
        "line\nbreak",
        "tab\u{7f}",
        &"x".repeat(AccessRules::MAX_USER_LEN + 1),
    ] {
        let claims = json!({"preferred_username": bad});
        assert_eq!(admit(&rules, claims).await, Err(Denied::NoUser), "{bad:?}");
    }
    let longest = "x".repeat(AccessRules::MAX_USER_LEN);
    assert!(
        admit(&rules, json!({"preferred_username": longest}))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn groups_are_a_list_or_one_string() {
    let rules = rules(|c| c.groups_claim = "roles".into());
    let one = json!({"email": "a@example.com", "email_verified": true, "roles": "ml"});
    assert_eq!(admit(&rules, one).await.unwrap().groups, ["ml"]);
    let mixed =
        json!({"email": "a@example.com", "email_verified": true, "roles": ["ml", 7, "ops"]});
    assert_eq!(admit(&rules, mixed).await.unwrap().groups, ["ml", "ops"]);
    let none = json!({"email": "a@example.com", "email_verified": true});
    assert!(admit(&rules, none).await.unwrap().groups.is_empty());
}

#[tokio::test]
async fn any_allow_list_match_admits() {
    let by_domain = rules(|c| c.allowed_email_domains = vec!["example.com".into()]);
    assert!(
        admit(&by_domain, alice()).await.is_ok(),
        "domains compare case-insensitively"
    );
    let bob = json!({"email": "bob@example.org", "email_verified": true, "groups": ["other"]});
    assert_eq!(
        admit(&by_domain, bob.clone()).await,
        Err(Denied::NotAllowed {
            user: "bob@example.org".into()
        })
    );
    // A subdomain, or the domain inside the local part, is not the domain.
    let sub = json!({"email": "eve@evil.example.com", "email_verified": true});
    assert!(admit(&by_domain, sub).await.is_err());

    let by_email = rules(|c| c.allowed_emails = vec!["alice@example.com".into()]);
    assert!(admit(&by_email, alice()).await.is_ok());
    assert!(admit(&by_email, bob.clone()).await.is_err());

    let by_group = rules(|c| c.allowed_groups = vec!["other".into()]);
    assert!(admit(&by_group, bob.clone()).await.is_ok());
    assert!(
        admit(&by_group, alice()).await.is_err(),
        "groups compare exactly"
    );

    let either = rules(|c| {
        c.allowed_email_domains = vec!["example.com".into()];
        c.allowed_groups = vec!["other".into()];
    });
    assert!(admit(&either, alice()).await.is_ok());
    assert!(admit(&either, bob).await.is_ok());
}

#[tokio::test]
async fn an_unverified_email_matches_no_allow_list() {
    let rules = rules(|c| {
        c.user_claim = "preferred_username".into();
        c.allowed_email_domains = vec!["example.com".into()];
        c.allowed_emails = vec!["alice@example.com".into()];
    });
    let mut claims = alice();
    claims["email_verified"] = json!(false);
    assert_eq!(
        admit(&rules, claims).await,
        Err(Denied::NotAllowed {
            user: "alice".into()
        })
    );
}

#[tokio::test]
async fn admin_is_membership_of_the_admin_group() {
    let with_admin = rules(|c| c.admin_group = Some("mlflow-admins".into()));
    assert!(admit(&with_admin, alice()).await.unwrap().admin);
    let other_admin = rules(|c| c.admin_group = Some("root".into()));
    assert!(!admit(&other_admin, alice()).await.unwrap().admin);
}

#[test]
fn readmit_applies_the_allow_lists_again() {
    let identity = Identity {
        user: "bob@example.org".into(),
        email: Some("Bob@Example.ORG".into()),
        groups: vec!["other".into()],
        ..identity()
    };
    assert!(rules(|_| {}).readmit(&identity).is_ok());
    assert!(
        rules(|c| c.allowed_email_domains = vec!["example.org".into()])
            .readmit(&identity)
            .is_ok()
    );
    assert!(
        rules(|c| c.allowed_emails = vec!["bob@example.org".into()])
            .readmit(&identity)
            .is_ok()
    );
    assert!(
        rules(|c| c.allowed_groups = vec!["other".into()])
            .readmit(&identity)
            .is_ok()
    );
    let denied = rules(|c| c.allowed_groups = vec!["mlflow-users".into()]).readmit(&identity);
    assert_eq!(
        denied,
        Err(Denied::NotAllowed {
            user: "bob@example.org".into()
        })
    );
    let nobody = Identity {
        user: String::new(),
        ..identity
    };
    assert_eq!(rules(|_| {}).readmit(&nobody), Err(Denied::NoUser));
}

#[test]
fn principal_carries_the_session_identity() {
    let identity = Identity {
        groups: vec!["mlflow-users".into(), "a,b".into(), "ops".into()],
        ..identity()
    };
    let principal = identity.principal();
    assert_eq!(principal.subject(), "alice@example.com");
    assert_eq!(principal.scheme(), Scheme::Session);
    assert!(principal.is_admin());
    assert_eq!(principal.attribute("email"), Some("alice@example.com"));
    assert_eq!(principal.attribute("groups"), Some("mlflow-users,ops"));
    assert_eq!(
        principal.attribute(AUTHENTICATOR_ATTRIBUTE),
        Some("session")
    );
    assert!(crate::metrics::AUTHENTICATORS.contains(&"session"));

    let bare = Identity {
        email: None,
        groups: Vec::new(),
        admin: false,
        ..identity
    };
    let principal = bare.principal();
    assert!(!principal.is_admin());
    assert_eq!(
        (principal.attribute("email"), principal.attribute("groups")),
        (None, None)
    );
}

#[test]
fn identity_round_trips_through_json() {
    let identity = identity();
    let json = serde_json::to_string(&identity).unwrap();
    assert_eq!(serde_json::from_str::<Identity>(&json).unwrap(), identity);
}

#[test]
fn denials_read_as_sentences() {
    assert!(Denied::EmailUnverified.to_string().contains("verified"));
    assert_eq!(
        Denied::NotAllowed {
            user: "bob@example.org".into()
        }
        .to_string(),
        "bob@example.org is not allowed to use this MLflow"
    );
}
