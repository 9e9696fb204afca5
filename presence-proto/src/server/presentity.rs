//! Presentities: who publishes, who watches, the composed documents (one per access level,
//! composed once per change and shared by every watcher), long-term presence (the account behind
//! a presentity, and phone-number aliases sharing an account's publications), and the
//! who-watches-whom index behind the mutual-subscription rule.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use super::publication::Publications;
use super::{PubId, SubId};
use crate::pidf;

/// One watch of a presentity: a single subscription (resource 0), or one resource of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Watch {
    pub(crate) sub: SubId,
    pub(crate) resource: u32,
}

#[derive(Debug)]
pub(crate) struct Presentity {
    /// `sip:user@host` (`;user=phone` kept), the PIDF entity of composed documents.
    pub(crate) entity: String,
    /// Live publications, oldest first.
    pub(crate) publications: Vec<PubId>,
    /// Subscriptions (and list resources) watching this presentity.
    pub(crate) watchers: Vec<Watch>,
    /// The account's SIP URI when the presentity exists in the account database (long-term
    /// presence): the `<contact>` of its long-term document.
    pub(crate) account: Option<String>,
    /// For a phone-number alias: the key of the account's presentity, whose publications it shows.
    pub(crate) alias_of: Option<String>,
    /// Keys of the aliases of this presentity.
    pub(crate) aliases: Vec<String>,
    /// The composed document for watchers with full access; None when stale.
    full: Option<Bytes>,
    /// The document for watchers without access to published state.
    restricted: Option<Bytes>,
}

/// How documents get their timestamps.
#[derive(Debug, Default, Clone)]
pub(crate) struct Clock {
    pub(crate) wall: Option<(Instant, SystemTime)>,
    pub(crate) retention: Duration,
}

impl Clock {
    /// RFC 3339 form of `at`, when a wall-clock anchor is known.
    fn format(&self, at: Instant) -> Option<String> {
        let (anchor, wall) = self.wall?;
        let t = if at >= anchor {
            wall.checked_add(at - anchor)?
        } else {
            wall.checked_sub(anchor - at)?
        };
        let secs = t.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs();
        Some(pidf::format_rfc3339(i64::try_from(secs).ok()?))
    }
}

#[derive(Debug, Default)]
pub(crate) struct Presentities {
    map: HashMap<String, Presentity>,
    /// watcher AOR → presentity AOR → number of live subscriptions.
    watching: HashMap<String, HashMap<String, u32>>,
    pub(crate) clock: Clock,
    /// When each user was last active (a publication refreshed or removed), kept for the
    /// retention time even when the presentity goes away; `activity_order` prunes it.
    last_activity: HashMap<String, Instant>,
    activity_order: VecDeque<(String, Instant)>,
}

/// A short stable token for ids derived from a key (FNV-1a).
fn id_token(prefix: &str, key: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut s = String::with_capacity(prefix.len() + 12);
    s.push_str(prefix);
    for i in 0..10 {
        let d = ((h >> (i * 5)) & 31) as u8;
        s.push(char::from(if d < 10 { b'0' + d } else { b'a' + d - 10 }));
    }
    s
}

impl Presentity {
    /// Marks the composed documents stale.
    pub(crate) fn invalidate_documents(&mut self) {
        self.full = None;
        self.restricted = None;
    }
}

impl Presentities {
    pub(crate) fn new(clock: Clock) -> Presentities {
        Presentities {
            clock,
            ..Presentities::default()
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// The presentity whose publications `key` shows: its account's when it is an alias.
    pub(crate) fn resolve<'a>(&'a self, key: &'a str) -> &'a str {
        self.map
            .get(key)
            .and_then(|p| p.alias_of.as_deref())
            .unwrap_or(key)
    }

    /// Whether a watcher with (`full`) or without access learns anything about `key`: published
    /// state (with access), or long-term presence.
    pub(crate) fn known(&self, key: &str, full: bool) -> bool {
        let Some(p) = self.map.get(key) else {
            return false;
        };
        p.account.is_some()
            || (full
                && self
                    .map
                    .get(self.resolve(key))
                    .is_some_and(|s| !s.publications.is_empty()))
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Presentity> {
        self.map.get(key)
    }

    pub(crate) fn get_mut(&mut self, key: &str) -> Option<&mut Presentity> {
        self.map.get_mut(key)
    }

    pub(crate) fn get_or_create(&mut self, key: &str, entity: &str) -> &mut Presentity {
        self.map
            .entry(key.to_owned())
            .or_insert_with(|| Presentity {
                entity: entity.to_owned(),
                publications: Vec::new(),
                watchers: Vec::new(),
                account: None,
                alias_of: None,
                aliases: Vec::new(),
                full: None,
                restricted: None,
            })
    }

    /// Drops a presentity nobody publishes for, watches, or aliases (and unlinks it from its
    /// account, which may then go too).
    pub(crate) fn remove_if_unused(&mut self, key: &str) {
        let unused = self.map.get(key).is_some_and(|p| {
            p.publications.is_empty() && p.watchers.is_empty() && p.aliases.is_empty()
        });
        if !unused {
            return;
        }
        if let Some(p) = self.map.remove(key)
            && let Some(target) = p.alias_of
        {
            if let Some(t) = self.map.get_mut(&target) {
                t.aliases.retain(|a| a != key);
            }
            self.remove_if_unused(&target);
        }
    }

    /// Records the account behind `key`; for an alias, links it to the account's presentity
    /// (created if needed). Returns true when anything changed.
    pub(crate) fn set_account(
        &mut self,
        key: &str,
        contact: String,
        account_key: Option<(String, String)>,
    ) -> bool {
        let Some(p) = self.map.get(key) else {
            return false;
        };
        let new_alias = account_key.as_ref().map(|(k, _)| k.clone());
        if p.account.as_deref() == Some(contact.as_str()) && p.alias_of == new_alias {
            return false;
        }
        let old_alias = p.alias_of.clone();
        if let Some(old) = old_alias
            && Some(&old) != new_alias.as_ref()
        {
            if let Some(t) = self.map.get_mut(&old) {
                t.aliases.retain(|a| a != key);
            }
            self.remove_if_unused(&old);
        }
        if let Some((target, entity)) = &account_key {
            let t = self.get_or_create(target, entity);
            if !t.aliases.iter().any(|a| a == key) {
                t.aliases.push(key.to_owned());
            }
        }
        if let Some(p) = self.map.get_mut(key) {
            p.account = Some(contact);
            p.alias_of = new_alias;
            p.full = None;
            p.restricted = None;
        }
        true
    }

    /// Forgets that `key` has an account (it was not found on a later lookup).
    pub(crate) fn clear_account(&mut self, key: &str) -> bool {
        let Some(p) = self.map.get_mut(key) else {
            return false;
        };
        if p.account.is_none() {
            return false;
        }
        p.account = None;
        p.full = None;
        p.restricted = None;
        if let Some(target) = p.alias_of.take() {
            if let Some(t) = self.map.get_mut(&target) {
                t.aliases.retain(|a| a != key);
            }
            self.remove_if_unused(&target);
        }
        true
    }

    /// Marks the composed documents of `key` and of its aliases stale; returns the keys whose
    /// watchers must hear about it (`key` first, then its aliases).
    pub(crate) fn invalidate(&mut self, key: &str) -> Vec<String> {
        let mut keys = vec![key.to_owned()];
        if let Some(p) = self.map.get_mut(key) {
            p.full = None;
            p.restricted = None;
            keys.extend(p.aliases.iter().cloned());
        }
        for a in &keys[1..] {
            if let Some(p) = self.map.get_mut(a) {
                p.full = None;
                p.restricted = None;
            }
        }
        keys
    }

    /// The document a watcher gets: composed from publications (`full`, and something is
    /// published), else long-term presence (an account exists), else the note-only document.
    pub(crate) fn document(
        &mut self,
        key: &str,
        full: bool,
        publications: &Publications,
        now: Instant,
    ) -> Bytes {
        let source = self.resolve(key).to_owned();
        let published = self
            .map
            .get(&source)
            .is_some_and(|s| !s.publications.is_empty());
        let Some(p) = self.map.get(key) else {
            return Bytes::new();
        };
        let full = full && published;
        if let Some(doc) = if full { &p.full } else { &p.restricted } {
            return doc.clone();
        }
        let mut out = Vec::with_capacity(512);
        if full {
            let docs: Vec<&pidf::Document> = self
                .map
                .get(&source)
                .map(|s| {
                    s.publications
                        .iter()
                        .rev()
                        .filter_map(|id| publications.document(*id))
                        .collect()
                })
                .unwrap_or_default();
            pidf::compose(&p.entity, &docs, &mut out);
        } else if let Some(contact) = &p.account {
            let last = self
                .last_activity
                .get(&source)
                .copied()
                .filter(|t| now.saturating_duration_since(*t) <= self.clock.retention)
                .and_then(|t| self.clock.format(t));
            pidf::long_term(
                &p.entity,
                contact,
                &id_token("lt", key),
                &id_token("p", key),
                last.as_deref(),
                &mut out,
            );
        } else {
            pidf::note_only(&p.entity, &mut out);
        }
        let doc = Bytes::from(out);
        if let Some(p) = self.map.get_mut(key) {
            if full {
                p.full = Some(doc.clone());
            } else {
                p.restricted = Some(doc.clone());
            }
        }
        doc
    }

    /// Records that the user of `key` was active at `now` (and forgets activity older than the
    /// retention time).
    pub(crate) fn record_activity(&mut self, key: &str, now: Instant) {
        while let Some((k, at)) = self.activity_order.front() {
            if now.saturating_duration_since(*at) <= self.clock.retention {
                break;
            }
            if self.last_activity.get(k) == Some(at) {
                self.last_activity.remove(k);
            }
            self.activity_order.pop_front();
        }
        self.last_activity.insert(key.to_owned(), now);
        self.activity_order.push_back((key.to_owned(), now));
    }

    /// Counts one more subscription of `watcher` to `presentity`; true when it is the first.
    pub(crate) fn add_watch(&mut self, watcher: &str, presentity: &str) -> bool {
        let inner = self.watching.entry(watcher.to_owned()).or_default();
        let n = inner.entry(presentity.to_owned()).or_insert(0);
        *n += 1;
        *n == 1
    }

    /// Counts one subscription less; true when it was the last.
    pub(crate) fn remove_watch(&mut self, watcher: &str, presentity: &str) -> bool {
        let Some(inner) = self.watching.get_mut(watcher) else {
            return false;
        };
        let last = match inner.get_mut(presentity) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                inner.remove(presentity);
                true
            }
            None => false,
        };
        if inner.is_empty() {
            self.watching.remove(watcher);
        }
        last
    }

    /// Whether `watcher` currently watches `presentity` or one of its phone-number aliases.
    pub(crate) fn watches(&self, watcher: &str, presentity: &str) -> bool {
        let Some(inner) = self.watching.get(watcher) else {
            return false;
        };
        inner.contains_key(presentity)
            || self
                .map
                .get(presentity)
                .is_some_and(|p| p.aliases.iter().any(|a| inner.contains_key(a)))
    }
}
