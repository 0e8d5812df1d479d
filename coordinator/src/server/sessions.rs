//! The dashboard's login sessions. Logging in with a token sets a cookie holding a fresh, opaque
//! session id — never the token — that expires after [`SESSION_TTL`]; the coordinator keeps the
//! ids in memory (a restart logs everyone out). Failed logins back off per client address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use axum::http::{HeaderMap, header};
use jetsweep_proto::sync;

use crate::clock::Millis;
use crate::credentials::Caller;

/// The cookie the login form sets.
pub const COOKIE: &str = "jetsweep_session";

/// How long a login lasts: a working day.
pub const SESSION_TTL_MS: Millis = 12 * 3600 * 1000;

/// Most sessions kept at once; past it, expired ones are dropped, then the oldest.
const MAX_SESSIONS: usize = 10_000;

/// Failed logins from one address before it must wait, and the longest wait.
const FREE_FAILURES: u32 = 5;
const MAX_WAIT_MS: Millis = 60_000;

/// Addresses with failed logins remembered at once.
const MAX_TRACKED: usize = 10_000;

#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, (Caller, Millis)>>,
    /// Per client address: failed logins in a row, and when it may try again.
    failures: Mutex<HashMap<IpAddr, (u32, Millis)>>,
}

/// The session id a request's cookie carries.
pub fn presented(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

impl Sessions {
    /// A new session for `caller`, valid until `now` + [`SESSION_TTL_MS`]: its id.
    pub fn open(&self, caller: Caller, now: Millis) -> Result<String, String> {
        let id = crate::credentials::new_token()?;
        let mut live = sync::lock(&self.live);
        if live.len() >= MAX_SESSIONS {
            live.retain(|_, (_, expires)| *expires > now);
        }
        if live.len() >= MAX_SESSIONS {
            let oldest = live
                .iter()
                .min_by_key(|(_, (_, expires))| *expires)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                live.remove(&oldest);
            }
        }
        live.insert(id.clone(), (caller, now + SESSION_TTL_MS));
        Ok(id)
    }

    /// Who a session id belongs to, while it has not expired.
    pub fn caller(&self, id: &str, now: Millis) -> Option<Caller> {
        let mut live = sync::lock(&self.live);
        match live.get(id) {
            Some((caller, expires)) if *expires > now => Some(caller.clone()),
            Some(_) => {
                live.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends a session (logging out).
    pub fn close(&self, id: &str) {
        sync::lock(&self.live).remove(id);
    }

    /// How long `address` must still wait before its next login attempt (0: it may try now).
    pub fn wait_ms(&self, address: IpAddr, now: Millis) -> Millis {
        sync::lock(&self.failures)
            .get(&address)
            .map_or(0, |(_, until)| (*until - now).max(0))
    }

    /// Records a failed login from `address`: after [`FREE_FAILURES`], each failure doubles its
    /// wait, up to [`MAX_WAIT_MS`].
    pub fn failed(&self, address: IpAddr, now: Millis) {
        let mut failures = sync::lock(&self.failures);
        if failures.len() >= MAX_TRACKED && !failures.contains_key(&address) {
            failures.retain(|_, (_, until)| *until > now);
            if failures.len() >= MAX_TRACKED {
                return;
            }
        }
        let entry = failures.entry(address).or_insert((0, now));
        entry.0 += 1;
        if entry.0 > FREE_FAILURES {
            let wait = (1000i64 << (entry.0 - FREE_FAILURES - 1).min(16)).min(MAX_WAIT_MS);
            entry.1 = now + wait;
        }
    }

    /// A successful login from `address` forgets its failures.
    pub fn succeeded(&self, address: IpAddr) {
        sync::lock(&self.failures).remove(&address);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::Role;

    #[test]
    fn a_session_names_its_caller_until_it_expires() {
        let sessions = Sessions::default();
        let alice = Caller {
            name: "alice".into(),
            role: Role::User,
        };
        let id = sessions.open(alice.clone(), 1_000).unwrap();
        assert_eq!(sessions.caller(&id, 2_000), Some(alice));
        assert_eq!(sessions.caller(&id, 1_000 + SESSION_TTL_MS), None);
        assert_eq!(sessions.caller("forged", 2_000), None);
    }

    #[test]
    fn failed_logins_back_off_after_five() {
        let sessions = Sessions::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..5 {
            sessions.failed(ip, 0);
        }
        assert_eq!(sessions.wait_ms(ip, 0), 0);
        sessions.failed(ip, 0);
        assert_eq!(sessions.wait_ms(ip, 0), 1000);
        sessions.failed(ip, 0);
        assert_eq!(sessions.wait_ms(ip, 0), 2000);
        for _ in 0..20 {
            sessions.failed(ip, 0);
        }
        assert_eq!(sessions.wait_ms(ip, 0), MAX_WAIT_MS);
        sessions.succeeded(ip);
        assert_eq!(sessions.wait_ms(ip, 0), 0);
    }
}
