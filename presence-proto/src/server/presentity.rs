//! Presentities: who publishes, who watches, the composed documents (one per access level,
//! composed once per change and shared by every watcher), and the who-watches-whom index behind
//! the mutual-subscription rule.

use std::collections::HashMap;

use bytes::Bytes;

use super::publication::Publications;
use super::{PubId, SubId};

/// One watch of a presentity: a single subscription (resource 0), or one resource of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Watch {
    pub(crate) sub: SubId,
    pub(crate) resource: u32,
}
use crate::pidf;

#[derive(Debug)]
pub(crate) struct Presentity {
    /// `sip:user@host`, the PIDF entity of composed documents.
    pub(crate) entity: String,
    /// Live publications, oldest first.
    pub(crate) publications: Vec<PubId>,
    /// Subscriptions (and list resources) watching this presentity.
    pub(crate) watchers: Vec<Watch>,
    /// The composed document for watchers with full access; None when stale.
    full: Option<Bytes>,
    /// The document for watchers without access to published state.
    restricted: Option<Bytes>,
}

#[derive(Debug, Default)]
pub(crate) struct Presentities {
    map: HashMap<String, Presentity>,
    /// watcher AOR → presentity AOR → number of live subscriptions.
    watching: HashMap<String, HashMap<String, u32>>,
}

impl Presentities {
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether watchers with full access have anything published to see.
    pub(crate) fn has_state(&self, key: &str) -> bool {
        self.map
            .get(key)
            .is_some_and(|p| !p.publications.is_empty())
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
                full: None,
                restricted: None,
            })
    }

    /// Drops a presentity nobody publishes for nor watches.
    pub(crate) fn remove_if_unused(&mut self, key: &str) {
        if self
            .map
            .get(key)
            .is_some_and(|p| p.publications.is_empty() && p.watchers.is_empty())
        {
            self.map.remove(key);
        }
    }

    /// Marks the composed documents stale after a change of publications.
    pub(crate) fn invalidate(&mut self, key: &str) {
        if let Some(p) = self.map.get_mut(key) {
            p.full = None;
        }
    }

    /// The document a watcher gets: composed from publications (`full`), or the restricted one.
    pub(crate) fn document(&mut self, key: &str, full: bool, publications: &Publications) -> Bytes {
        let Some(p) = self.map.get_mut(key) else {
            return Bytes::new();
        };
        if full {
            if let Some(doc) = &p.full {
                return doc.clone();
            }
            let docs: Vec<&pidf::Document> = p
                .publications
                .iter()
                .rev()
                .filter_map(|id| publications.document(*id))
                .collect();
            let mut out = Vec::with_capacity(512 * docs.len().max(1));
            pidf::compose(&p.entity, &docs, &mut out);
            let doc = Bytes::from(out);
            p.full = Some(doc.clone());
            doc
        } else {
            if let Some(doc) = &p.restricted {
                return doc.clone();
            }
            let mut out = Vec::with_capacity(256);
            pidf::note_only(&p.entity, &mut out);
            let doc = Bytes::from(out);
            p.restricted = Some(doc.clone());
            doc
        }
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

    /// Whether `watcher` currently holds a subscription to `presentity`.
    pub(crate) fn watches(&self, watcher: &str, presentity: &str) -> bool {
        self.watching
            .get(watcher)
            .is_some_and(|inner| inner.contains_key(presentity))
    }
}
