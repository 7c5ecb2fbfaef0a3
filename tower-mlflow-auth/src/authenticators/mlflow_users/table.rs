//! The parsed user table and the check of one login against it.

use std::collections::{HashMap, hash_map::Entry};

use secrecy::{ExposeSecret as _, SecretString};
use subtle::ConstantTimeEq as _;

use super::{
    super::revocation::{Revoked, changed_users},
    error::{InvalidUserRecord, MlflowUsersError},
    limits::WerkzeugLimits,
    store::UserRecord,
    werkzeug::{Method, WerkzeugHash},
};
use crate::{authorization::Authorization, credentials::Scheme};

/// The password older MLflow versions shipped for `admin`; refused for admin accounts.
pub(super) const LEGACY_ADMIN_PASSWORD: &str = "password1234";

/// The users of one load, with the problems of each row kept per user.
pub(super) struct UserTable {
    pub(super) users: HashMap<Box<str>, UserEntry>,
    /// What unknown usernames are checked against.
    dummy: WerkzeugHash,
}

#[derive(PartialEq, Eq)]
pub(super) enum UserEntry {
    Valid { hash: WerkzeugHash, is_admin: bool },
    Invalid(InvalidUserRecord),
}

impl UserTable {
    /// Parses every record; problems are kept per user.
    pub(super) fn parse(records: Vec<UserRecord>, limits: &WerkzeugLimits) -> Self {
        let mut users: HashMap<Box<str>, UserEntry> = HashMap::with_capacity(records.len());
        for record in records {
            let entry =
                match WerkzeugHash::parse_with_limits(record.password_hash.expose_secret(), limits)
                {
                    Ok(hash) => UserEntry::Valid {
                        hash,
                        is_admin: record.is_admin,
                    },
                    Err(e) => UserEntry::Invalid(InvalidUserRecord::Hash(e)),
                };
            match users.entry(record.username.into_boxed_str()) {
                // MLflow's `.one()` fails for a duplicated name; so does this.
                Entry::Occupied(mut slot) => {
                    slot.insert(UserEntry::Invalid(InvalidUserRecord::Duplicate));
                }
                Entry::Vacant(slot) => {
                    slot.insert(entry);
                }
            }
        }
        let dummy = WerkzeugHash::dummy(most_common_method(&users));
        Self { users, dummy }
    }

    /// The users whose row is new, gone or different in this table: their cached logins
    /// must be checked again.
    pub(super) fn revoked_since(&self, before: &Self) -> Option<Revoked> {
        changed_users(&before.users, &self.users)
    }

    /// The users whose rows cannot be used, sorted by name.
    pub(super) fn invalid_users(&self) -> Vec<(&str, &InvalidUserRecord)> {
        let mut invalid: Vec<_> = self
            .users
            .iter()
            .filter_map(|(name, entry)| match entry {
                UserEntry::Invalid(why) => Some((name.as_ref(), why)),
                UserEntry::Valid { .. } => None,
            })
            .collect();
        invalid.sort_by_key(|(name, _)| *name);
        invalid
    }

    /// The whole check of one login. Runs the hash: call it from a blocking thread.
    pub(super) fn verify(
        &self,
        username: &str,
        password: &SecretString,
    ) -> Result<Option<Authorization>, MlflowUsersError> {
        let password = password.expose_secret().as_bytes();
        let (hash, is_admin) = match self.users.get(username) {
            Some(UserEntry::Valid { hash, is_admin }) => (hash, *is_admin),
            Some(UserEntry::Invalid(reason)) => {
                return Err(MlflowUsersError::InvalidRecord {
                    username: username.into(),
                    reason: reason.clone(),
                });
            }
            None => {
                // Same work as a real user, so that response times do not reveal usernames.
                let _ = self.dummy.verify(password);
                return Ok(None);
            }
        };
        if !hash.verify(password) {
            return Ok(None);
        }
        if is_admin && bool::from(password.ct_eq(LEGACY_ADMIN_PASSWORD.as_bytes())) {
            tracing::warn!(
                user = %username,
                "refused an admin login with the legacy default password of older MLflow versions \
                 (GHSA-gq3w-7jj3-x7gr); change that account's password"
            );
            return Ok(None);
        }
        Ok(Some(
            Authorization::new(username, Scheme::Basic).with_admin(is_admin),
        ))
    }
}

/// The method most users' hashes use, or werkzeug 3.1's default for an empty table.
fn most_common_method(users: &HashMap<Box<str>, UserEntry>) -> Method {
    let mut counts: HashMap<Method, usize> = HashMap::new();
    for entry in users.values() {
        if let UserEntry::Valid { hash, .. } = entry {
            *counts.entry(hash.method()).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .max_by_key(|&(method, count)| (count, method_cost_rank(method)))
        .map_or(
            Method::Scrypt {
                log_n: 15,
                r: 8,
                p: 1,
            },
            |(method, _)| method,
        )
}

/// A deterministic tie-break between equally common methods: the costlier one.
fn method_cost_rank(method: Method) -> u64 {
    match method {
        Method::Scrypt { log_n, r, p } => (1u64 << log_n)
            .saturating_mul(u64::from(r))
            .saturating_mul(u64::from(p)),
        Method::Pbkdf2 { iterations, .. } => u64::from(iterations),
    }
}

/// Warns about unusable rows once, when they first appear, not on every reload. `reported`
/// holds the names warned about for the last table that loaded.
pub(super) fn warn_about_new_invalid_users(reported: &mut Vec<Box<str>>, next: &UserTable) {
    let invalid = next.invalid_users();
    for (user, why) in &invalid {
        if reported
            .binary_search_by(|name| (**name).cmp(user))
            .is_err()
        {
            tracing::warn!(%user, "unusable MLflow user record: {why}");
        }
    }
    *reported = invalid.into_iter().map(|(name, _)| name.into()).collect();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(username: &str, hash: &str) -> UserRecord {
        UserRecord::new(username, hash)
    }

    #[test]
    fn the_dummy_takes_the_most_common_method() {
        let d64 = "0".repeat(64);
        let d128 = "0".repeat(128);
        let table = UserTable::parse(
            vec![
                record("a", &format!("pbkdf2:sha256:2$s${d64}")),
                record("b", &format!("pbkdf2:sha256:2$t${d64}")),
                record("c", &format!("scrypt:16:2:3$s${d128}")),
            ],
            &WerkzeugLimits::default(),
        );
        assert_eq!(table.dummy.to_string(), "pbkdf2:sha256:2");
        let empty = UserTable::parse(Vec::new(), &WerkzeugLimits::default());
        assert_eq!(empty.dummy.to_string(), "scrypt:32768:8:1");
    }

    #[test]
    fn a_reload_revokes_users_whose_row_changed() {
        let d64 = "0".repeat(64);
        let limits = WerkzeugLimits::default();
        let hash = |salt: &str| format!("pbkdf2:sha256:2${salt}${d64}");
        let before = UserTable::parse(
            vec![
                record("alice", &hash("a")),
                record("bob", &hash("b")),
                record("carol", &hash("c")),
                record("erin", &hash("e")),
            ],
            &limits,
        );
        let after = UserTable::parse(
            vec![
                record("alice", &hash("a")),
                record("bob", &hash("new")),
                record("carol", &hash("c")).with_admin(true),
                record("dave", &hash("d")),
            ],
            &limits,
        );
        assert_eq!(
            after.revoked_since(&before),
            Some(Revoked::Users(vec![
                "bob".into(),
                "carol".into(),
                "dave".into(),
                "erin".into()
            ]))
        );
        assert_eq!(before.revoked_since(&before), None);
    }

    #[test]
    fn new_invalid_users_are_reported_once() {
        let limits = WerkzeugLimits::default();
        let bad = |names: &[&str]| {
            UserTable::parse(
                names.iter().map(|name| record(name, "plain")).collect(),
                &limits,
            )
        };
        let mut reported = Vec::new();
        warn_about_new_invalid_users(&mut reported, &bad(&["bob", "alice"]));
        assert_eq!(reported, ["alice".into(), "bob".into()] as [Box<str>; 2]);
        warn_about_new_invalid_users(&mut reported, &bad(&["carol"]));
        assert_eq!(reported, ["carol".into()] as [Box<str>; 1]);
        warn_about_new_invalid_users(&mut reported, &bad(&[]));
        assert!(reported.is_empty());
    }
}
