//! One login transaction: the `state`, `nonce` and PKCE verifier of one trip to the issuer,
//! and the path to return to, sealed in a short-lived cookie of its own (so several tabs can
//! sign in at once) that only the gateway's own pages receive (`Path=/_gateway/`: the login,
//! which removes the oldest beyond [`Transaction::MAX_OPEN`], and the callback; never a page
//! of MLflow). [`UsedStates`] remembers the states already redeemed by this process, so a
//! replayed callback is refused.

use std::{
    collections::{HashMap, VecDeque},
    error::Error,
    fmt,
    sync::{Mutex, PoisonError},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use http::{HeaderMap, HeaderValue, header::COOKIE};
use secrecy::{ExposeSecret, SecretString, zeroize::Zeroizing};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower_mlflow_auth::session::{ReturnPath, SessionKeys, SessionSealError};

/// The random bytes behind a state, a nonce and a PKCE verifier.
const RANDOM_LEN: usize = 32;
/// Their base64url length (no padding).
const ENCODED_LEN: usize = 43;
/// How many characters of the state name the cookie: 132 bits, plenty to keep the cookies
/// of concurrent logins apart; the whole state is checked inside.
const NAME_STATE_LEN: usize = 22;
/// The path of the transaction cookies: `/_gateway/login` and `/_gateway/callback` receive
/// them, no page of MLflow does.
const COOKIE_PATH: &str = "/_gateway/";
/// The payload format.
const VERSION: u8 = 1;

/// One login in progress.
#[derive(Clone, Debug)]
pub(crate) struct Transaction {
    /// The `state` sent to the issuer: 32 random bytes, base64url.
    pub state: String,
    /// The `nonce` the ID token must carry: 32 random bytes, base64url.
    pub nonce: String,
    /// The PKCE code verifier (43 characters).
    pub pkce_verifier: SecretString,
    /// Where to send the browser after sign-in: a checked [`ReturnPath`].
    pub return_to: String,
}

/// What the cookie seals.
#[derive(Serialize, Deserialize)]
struct Sealed {
    v: u8,
    state: String,
    nonce: String,
    verifier: String,
    return_to: String,
    /// Unix seconds: orders the open transactions for [`Transaction::MAX_OPEN`].
    created: u64,
}

impl Transaction {
    /// How long a login may take, and the transaction cookie's `Max-Age`.
    pub(crate) const LIFETIME: Duration = Duration::from_secs(600);
    /// The transaction cookies' names start with this.
    pub(crate) const COOKIE_PREFIX: &str = "mlflow_gateway_login.";
    /// The most transactions open at once in one browser; the oldest are removed when
    /// another starts.
    pub(crate) const MAX_OPEN: usize = 4;

    /// A new transaction returning to `return_to`, with fresh random values.
    ///
    /// # Errors
    ///
    /// [`RandomUnavailable`] when the operating system gives no random bytes.
    pub(crate) fn begin(return_to: &ReturnPath) -> Result<Self, RandomUnavailable> {
        Ok(Self {
            state: random_token()?,
            nonce: random_token()?,
            pkce_verifier: SecretString::from(random_token()?),
            return_to: return_to.as_str().to_owned(),
        })
    }

    /// The PKCE `code_challenge`: base64url of the SHA-256 of the verifier (S256, RFC 7636
    /// §4.2).
    pub(crate) fn pkce_challenge(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(
            self.pkce_verifier.expose_secret().as_bytes(),
        ))
    }

    /// The `Set-Cookie` of this transaction (`Path=/_gateway/; Max-Age=600;
    /// HttpOnly; SameSite=Lax`, and `Secure` when `secure`), then removals for the
    /// transaction cookies of `request` beyond [`MAX_OPEN`](Self::MAX_OPEN) (the oldest
    /// first) and for those that no longer open.
    ///
    /// The browser sends transaction cookies only to `/_gateway/…`, so the removals happen
    /// when `request` is for `/_gateway/login`, not for a page load that starts a sign-in.
    ///
    /// # Errors
    ///
    /// [`SessionSealError`] when the value cannot be sealed; `RandomUnavailable` also for a
    /// state that [`begin`](Self::begin) did not make.
    pub(crate) fn set_cookies(
        &self,
        keys: &SessionKeys,
        request: &HeaderMap,
        secure: bool,
        now: SystemTime,
    ) -> Result<Vec<HeaderValue>, SessionSealError> {
        let name = cookie_name(&self.state).ok_or(SessionSealError::RandomUnavailable)?;
        let sealed = Sealed {
            v: VERSION,
            state: self.state.clone(),
            nonce: self.nonce.clone(),
            verifier: self.pkce_verifier.expose_secret().to_owned(),
            return_to: self.return_to.clone(),
            created: unix_seconds(now),
        };
        // serde_json cannot fail on a struct of strings and numbers.
        let json = Zeroizing::new(serde_json::to_vec(&sealed).unwrap_or_default());
        let value = keys.seal(&name, &json, now + Self::LIFETIME)?;
        let own = header(
            &format!(
                "{name}={value}; Path={COOKIE_PATH}; Max-Age={}; HttpOnly; SameSite=Lax",
                Self::LIFETIME.as_secs()
            ),
            secure,
        )
        .ok_or(SessionSealError::TooLarge)?;
        let mut headers = vec![own];
        headers.extend(
            stale_cookies(keys, request, &name, now)
                .into_iter()
                .filter_map(|stale| removal(&stale, secure)),
        );
        Ok(headers)
    }

    /// The transaction whose `state` came back from the issuer: the cookie it names opens
    /// with `keys` at `now` and seals the same state (compared in constant time). `None` for
    /// a state that is not 43 base64url characters, a missing, tampered, expired or
    /// other-key cookie, or another state.
    pub(crate) fn take(
        keys: &SessionKeys,
        request: &HeaderMap,
        state: &str,
        now: SystemTime,
    ) -> Option<Self> {
        let name = cookie_name(state)?;
        request_cookies(request)
            .filter(|(cookie, _)| *cookie == name)
            .find_map(|(_, value)| {
                let sealed = open(keys, &name, value, now)?;
                let same: bool = sealed.state.as_bytes().ct_eq(state.as_bytes()).into();
                let verifier_ok = is_token(&sealed.verifier);
                (same && verifier_ok && is_token(&sealed.nonce)).then(|| Self {
                    state: sealed.state,
                    nonce: sealed.nonce,
                    pkce_verifier: SecretString::from(sealed.verifier),
                    // Sealed by us, so already checked; checked again all the same.
                    return_to: ReturnPath::parse(&sealed.return_to)
                        .unwrap_or_default()
                        .as_str()
                        .to_owned(),
                })
            })
    }

    /// The `Set-Cookie` that removes the transaction cookie of `state`, or `None` for a
    /// state that is not 43 base64url characters.
    pub(crate) fn removal_cookie(state: &str, secure: bool) -> Option<HeaderValue> {
        removal(&cookie_name(state)?, secure)
    }

    /// Whether the cookie `name` is a transaction cookie (removed before forwarding).
    pub(crate) fn is_own_cookie(name: &str) -> bool {
        name.starts_with(Self::COOKIE_PREFIX)
    }
}

/// The cookie of `state`, when `state` is what [`Transaction::begin`] makes.
fn cookie_name(state: &str) -> Option<String> {
    is_state(state).then(|| format!("{}{}", Transaction::COOKIE_PREFIX, &state[..NAME_STATE_LEN]))
}

/// 43 base64url characters: 32 random bytes.
fn is_state(value: &str) -> bool {
    value.len() == ENCODED_LEN && is_base64url(value)
}

/// A nonce or a PKCE verifier as sealed: 43 to 128 base64url characters (RFC 7636 §4.1).
fn is_token(value: &str) -> bool {
    (ENCODED_LEN..=128).contains(&value.len()) && is_base64url(value)
}

fn is_base64url(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn random_token() -> Result<String, RandomUnavailable> {
    let mut bytes = Zeroizing::new([0_u8; RANDOM_LEN]);
    getrandom::fill(&mut bytes[..]).map_err(|error| {
        // RandomUnavailable names no getrandom type, so the cause is logged here.
        tracing::error!(%error, "no randomness for a login transaction");
        RandomUnavailable
    })?;
    Ok(URL_SAFE_NO_PAD.encode(&bytes[..]))
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn open(keys: &SessionKeys, name: &str, value: &str, now: SystemTime) -> Option<Sealed> {
    let json = keys.open(name, value, now)?;
    let sealed: Sealed = serde_json::from_slice(json.expose_secret()).ok()?;
    (sealed.v == VERSION).then_some(sealed)
}

/// `name=value` pairs of every `Cookie` header.
fn request_cookies(request: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    request
        .get_all(COOKIE)
        .iter()
        .filter_map(|header| header.to_str().ok())
        .flat_map(|header| header.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            Some((name.trim(), value.trim()))
        })
}

/// The transaction cookies of `request` (other than `new`) to remove: those that do not
/// open, and the oldest beyond [`Transaction::MAX_OPEN`] counting `new`.
fn stale_cookies(
    keys: &SessionKeys,
    request: &HeaderMap,
    new: &str,
    now: SystemTime,
) -> Vec<String> {
    let mut open_ones: Vec<(u64, String)> = Vec::new();
    let mut stale: Vec<String> = Vec::new();
    for (name, value) in request_cookies(request) {
        let ours = name
            .strip_prefix(Transaction::COOKIE_PREFIX)
            .is_some_and(|rest| rest.len() == NAME_STATE_LEN && is_base64url(rest));
        let seen = stale
            .iter()
            .chain(open_ones.iter().map(|(_, n)| n))
            .any(|n| n == name);
        if !ours || name == new || seen {
            continue;
        }
        match open(keys, name, value, now) {
            Some(sealed) => open_ones.push((sealed.created, name.to_owned())),
            None => stale.push(name.to_owned()),
        }
    }
    // Newest first; the new one takes a place. Browsers send older cookies first (RFC 6265
    // §5.4), so within one second the later one in the request is the newer.
    open_ones.reverse();
    open_ones.sort_by_key(|(created, _)| std::cmp::Reverse(*created));
    stale.extend(
        open_ones
            .into_iter()
            .skip(Transaction::MAX_OPEN - 1)
            .map(|(_, name)| name),
    );
    stale
}

fn removal(name: &str, secure: bool) -> Option<HeaderValue> {
    header(
        &format!("{name}=; Path={COOKIE_PATH}; Max-Age=0; HttpOnly; SameSite=Lax"),
        secure,
    )
}

fn header(cookie: &str, secure: bool) -> Option<HeaderValue> {
    let cookie = if secure {
        format!("{cookie}; Secure")
    } else {
        cookie.to_owned()
    };
    HeaderValue::from_str(&cookie).ok()
}

/// The operating system gave no random bytes for a login transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RandomUnavailable;

impl fmt::Display for RandomUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("no randomness for a login transaction")
    }
}

impl Error for RandomUnavailable {}

/// The states this process has redeemed, each kept for [`Transaction::LIFETIME`] (after
/// which its cookie has expired anyway), at most [`MAX_ENTRIES`](Self::MAX_ENTRIES): when
/// full, the oldest is forgotten (its code is single-use at the issuer all the same).
pub(crate) struct UsedStates {
    used: Mutex<Used>,
}

#[derive(Default)]
struct Used {
    /// State → when it may be forgotten.
    until: HashMap<String, SystemTime>,
    /// The states in the order they were used, with their expiry then (an entry whose
    /// expiry no longer matches `until` was used again after it expired).
    order: VecDeque<(String, SystemTime)>,
}

impl UsedStates {
    /// The most states remembered.
    pub(crate) const MAX_ENTRIES: usize = 10_000;

    /// Nothing used yet.
    pub(crate) fn new() -> Self {
        Self {
            used: Mutex::new(Used::default()),
        }
    }

    /// Records `state` as used at `now`: `true` the first time, `false` when it was used
    /// within the last [`Transaction::LIFETIME`].
    pub(crate) fn first_use(&self, state: &str, now: SystemTime) -> bool {
        // The maps stay consistent whatever panicked while they were held.
        let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        let Used { until, order } = &mut *used;
        while order.front().is_some_and(|(_, expiry)| *expiry <= now) {
            forget_oldest(until, order);
        }
        if until.get(state).is_some_and(|&expiry| expiry > now) {
            return false;
        }
        while until.len() >= Self::MAX_ENTRIES && !order.is_empty() {
            forget_oldest(until, order);
        }
        let expiry = now + Transaction::LIFETIME;
        until.insert(state.to_owned(), expiry);
        order.push_back((state.to_owned(), expiry));
        true
    }

    /// How many states are remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.used
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .until
            .len()
    }
}

/// Drops the oldest entry of `order`, and its state unless it was used again since.
fn forget_oldest(
    until: &mut HashMap<String, SystemTime>,
    order: &mut VecDeque<(String, SystemTime)>,
) {
    if let Some((state, expiry)) = order.pop_front()
        && until.get(&state) == Some(&expiry)
    {
        until.remove(&state);
    }
}

impl Default for UsedStates {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for UsedStates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("UsedStates")
            .field("remembered", &used.until.len())
            .finish()
    }
}

#[cfg(test)]
pub(crate) mod tests;
