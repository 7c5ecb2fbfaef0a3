//! The users of one version of an htpasswd file.

use std::{
    collections::{HashMap, hash_map::Entry},
    path::Path,
    sync::Arc,
};

use super::{
    super::revocation::{Revoked, changed_users},
    error::HtpasswdBuildError,
    hash::{StoredHash, WorkClass},
    line::{HtpasswdEntry, parse_htpasswd_line},
};

/// A parsed file, replaced as a whole when the file changes.
pub(super) struct Table {
    pub(super) users: HashMap<Box<str>, Arc<StoredHash>>,
    /// Checked for unknown users; `None` for an empty table.
    pub(super) decoy: Option<Arc<StoredHash>>,
    /// Set when the file cannot be read: every user is refused with this error (503) until
    /// it can, rather than served from a table the file no longer backs.
    pub(super) unreadable: Option<Arc<HtpasswdBuildError>>,
}

impl Table {
    /// Parses a whole file; `path` only names it in errors.
    pub(super) fn parse(text: &str, path: Option<&Path>) -> Result<Self, HtpasswdBuildError> {
        let mut users: HashMap<Box<str>, (usize, Arc<StoredHash>)> = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line_number = index + 1;
            let entry =
                parse_htpasswd_line(line).map_err(|error| HtpasswdBuildError::InvalidLine {
                    path: path.map(Path::to_path_buf),
                    line: line_number,
                    error,
                })?;
            let Some(HtpasswdEntry { username, hash }) = entry else {
                continue;
            };
            match users.entry(username) {
                Entry::Occupied(first) => {
                    return Err(HtpasswdBuildError::DuplicateUser {
                        path: path.map(Path::to_path_buf),
                        line: line_number,
                        first_line: first.get().0,
                    });
                }
                Entry::Vacant(slot) => {
                    slot.insert((line_number, hash));
                }
            }
        }
        // The decoy imitates the most common parameters (ties: the costlier), so that in a
        // uniform file unknown users take exactly as long as known ones.
        let mut classes: HashMap<WorkClass, usize> = HashMap::new();
        for (_, hash) in users.values() {
            *classes.entry(hash.work_class()).or_default() += 1;
        }
        let decoy = classes
            .into_iter()
            .max_by_key(|&(class, count)| (count, class))
            .map(|(class, _)| Arc::new(StoredHash::decoy(class)));
        Ok(Self {
            users: users
                .into_iter()
                .map(|(user, (_, hash))| (user, hash))
                .collect(),
            decoy,
            unreadable: None,
        })
    }

    /// The state of a file that cannot be read: no users, every check fails with `error`.
    pub(super) fn unreadable(error: HtpasswdBuildError) -> Self {
        Self {
            users: HashMap::new(),
            decoy: None,
            unreadable: Some(Arc::new(error)),
        }
    }

    /// What a cache must forget when this table replaces `before`.
    pub(super) fn revoked_since(&self, before: &Self) -> Option<Revoked> {
        match (&before.unreadable, &self.unreadable) {
            (None, Some(_)) => Some(Revoked::All),
            // Everything was revoked when the file became unreadable; nothing was accepted
            // since.
            (Some(_), _) => None,
            (None, None) => changed_users(&before.users, &self.users),
        }
    }

    /// The hash to check a password against, and whether it belongs to `username`: unknown
    /// users get the decoy, so that they cost as much as known ones. `None` for an empty
    /// table, where there is nothing to imitate.
    pub(super) fn hash_for(&self, username: &str) -> Option<(Arc<StoredHash>, bool)> {
        match self.users.get(username) {
            Some(hash) => Some((Arc::clone(hash), true)),
            None => self.decoy.as_ref().map(|decoy| (Arc::clone(decoy), false)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE_APR1: &str = "alice:$apr1$abcdefgh$aDPo2xmbXHAQSzMtOEWhn/";
    const CAROL_BCRYPT: &str = "carol:$2y$05$O3cpwl/0eErvy3EaKaKpQelXeavfRGTTY0GryPu5TSpbSNg0yO.bi";

    #[test]
    fn known_users_get_their_hash_and_unknown_ones_the_decoy() {
        let table = Table::parse(&format!("{ALICE_APR1}\n{CAROL_BCRYPT}\n"), None).unwrap();
        let (hash, known) = table.hash_for("alice").unwrap();
        assert!(known);
        assert!(Arc::ptr_eq(&hash, &table.users["alice"]));
        let (hash, known) = table.hash_for("mallory").unwrap();
        assert!(!known);
        assert!(Arc::ptr_eq(&hash, table.decoy.as_ref().unwrap()));
        assert!(!hash.verify(b"mlflow-pass"));
    }

    #[test]
    fn a_reload_revokes_changed_users_and_unreadable_files_revoke_all() {
        let first = Table::parse(&format!("{ALICE_APR1}\n{CAROL_BCRYPT}\n"), None).unwrap();
        let same = Table::parse(&format!("{CAROL_BCRYPT}\n{ALICE_APR1}\n"), None).unwrap();
        assert_eq!(same.revoked_since(&first), None, "same users, same hashes");
        let changed = Table::parse(
            "carol:$apr1$abcdefgh$aDPo2xmbXHAQSzMtOEWhn/\ndave:{SHA}Vm5wFmcHTQtCu7kCWsKiMBNgg94=\n",
            None,
        )
        .unwrap();
        assert_eq!(
            changed.revoked_since(&first),
            Some(Revoked::Users(vec![
                "alice".into(),
                "carol".into(),
                "dave".into()
            ]))
        );
        let gone = Table::unreadable(HtpasswdBuildError::TooLarge {
            path: "htpasswd".into(),
        });
        assert_eq!(gone.revoked_since(&first), Some(Revoked::All));
        assert_eq!(gone.revoked_since(&gone), None);
        assert_eq!(first.revoked_since(&gone), None);
    }

    #[test]
    fn an_empty_table_has_no_decoy() {
        let table = Table::parse("# nobody\n\n", None).unwrap();
        assert!(table.users.is_empty());
        assert!(table.hash_for("alice").is_none());
    }
}
