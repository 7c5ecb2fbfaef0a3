//! The authenticated principal handed to inner services.

use std::{collections::BTreeMap, fmt, sync::Arc};

use crate::credentials::Scheme;

/// Who made a request, as established by an [`Authenticator`](crate::Authenticator).
///
/// [`AuthLayer`](crate::AuthLayer) inserts it into the request extensions before the inner
/// service runs. It holds no secret, and cloning it is one reference-count increment.
///
/// ```
/// use tower_mlflow_auth::{Authorization, Scheme};
///
/// let who = Authorization::new("alice", Scheme::Basic)
///     .with_admin(true)
///     .with_attribute("team", "vision");
/// assert_eq!(who.subject(), "alice");
/// assert!(who.is_admin());
/// assert_eq!(who.attribute("team"), Some("vision"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Authorization(Arc<Principal>);

#[derive(Clone, PartialEq, Eq)]
struct Principal {
    subject: Box<str>,
    scheme: Scheme,
    admin: bool,
    attributes: BTreeMap<Box<str>, Box<str>>,
}

impl Authorization {
    /// A principal for `subject` (a username, a token's `sub`, a service-account name)
    /// authenticated with `scheme`; not an admin, no attributes.
    #[must_use]
    pub fn new(subject: impl Into<Box<str>>, scheme: Scheme) -> Self {
        Self(Arc::new(Principal {
            subject: subject.into(),
            scheme,
            admin: false,
            attributes: BTreeMap::new(),
        }))
    }

    /// Sets the admin flag (MLflow's `is_admin`).
    #[must_use]
    pub fn with_admin(mut self, admin: bool) -> Self {
        Arc::make_mut(&mut self.0).admin = admin;
        self
    }

    /// Adds or replaces an attribute, such as a claim copied from a token or a group name.
    #[must_use]
    pub fn with_attribute(mut self, key: impl Into<Box<str>>, value: impl Into<Box<str>>) -> Self {
        Arc::make_mut(&mut self.0)
            .attributes
            .insert(key.into(), value.into());
        self
    }

    /// The authenticated subject: a username or a token subject.
    #[must_use]
    pub fn subject(&self) -> &str {
        &self.0.subject
    }

    /// The credential scheme the client used.
    #[must_use]
    pub fn scheme(&self) -> Scheme {
        self.0.scheme
    }

    /// Whether the principal is an administrator.
    #[must_use]
    pub fn is_admin(&self) -> bool {
        self.0.admin
    }

    /// One attribute's value.
    #[must_use]
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.0.attributes.get(key).map(AsRef::as_ref)
    }

    /// All attributes, ordered by key.
    pub fn attributes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .attributes
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_ref()))
    }
}

impl fmt::Debug for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorization")
            .field("subject", &self.0.subject)
            .field("scheme", &self.0.scheme)
            .field("admin", &self.0.admin)
            .field("attributes", &self.0.attributes)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_and_builders_do_not_alias() {
        let a = Authorization::new("alice", Scheme::Bearer);
        let b = a.clone();
        assert!(Arc::ptr_eq(&a.0, &b.0));
        let admin = b.with_admin(true);
        assert!(!a.is_admin());
        assert!(admin.is_admin());
        assert_eq!(admin.scheme(), Scheme::Bearer);
    }

    #[test]
    fn attributes_are_ordered_and_replaced() {
        let who = Authorization::new("svc", Scheme::Header)
            .with_attribute("b", "2")
            .with_attribute("a", "1")
            .with_attribute("b", "3");
        assert_eq!(
            who.attributes().collect::<Vec<_>>(),
            [("a", "1"), ("b", "3")]
        );
        assert_eq!(who.attribute("missing"), None);
    }

    #[test]
    fn is_send_sync_static() {
        fn check<T: Clone + Send + Sync + 'static>() {}
        check::<Authorization>();
    }
}
