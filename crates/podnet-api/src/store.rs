//! The objects a lab serves, with resource versions and a history of changes for watchers.
//!
//! The store is a projection, replaced whole each time the lab changes: [`Store::replace`]
//! compares the new objects with the held ones and records what was added, modified and
//! deleted, each change with the next resource version, as the API server's watch cache does.
//! Each object keeps the `uid` and `creationTimestamp` it got when it first appeared.
//!
//! Controllers write status ([`Store::write_status`]), as on a cluster, for the kinds whose
//! status is theirs ([`Kind::status_by_controllers`]): the projection carries none for them,
//! and what a controller wrote stays with the object while the lab changes (the API server
//! keeps an object's status when its spec changes), until the object goes.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::Value;

use podnet_model::Kind;

use crate::resources::{self, Resource};

/// Which object: its resource, namespace ("" when cluster-scoped) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

/// Keys in the order of their kinds' names, then namespace and name.
impl Ord for Key {
    fn cmp(&self, other: &Key) -> std::cmp::Ordering {
        (self.kind.as_str(), &self.namespace, &self.name).cmp(&(
            other.kind.as_str(),
            &other.namespace,
            &other.name,
        ))
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Key) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Key {
    /// The key of an API object (its `kind`, `metadata.namespace` and `metadata.name`).
    pub fn of(obj: &Value) -> Option<Key> {
        let r = resources::by_kind(Kind::parse(obj["kind"].as_str()?)?)?;
        let meta = &obj["metadata"];
        Some(Key {
            kind: r.kind,
            namespace: if r.namespaced {
                meta["namespace"].as_str().unwrap_or("default").to_string()
            } else {
                String::new()
            },
            name: meta["name"].as_str()?.to_string(),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as watchers see it.
#[derive(Debug, Clone)]
pub struct Event {
    pub rv: u64,
    pub kind: EventType,
    pub key: Key,
    /// The object after the change (for a deletion: as it was, at the deletion's version).
    pub object: Arc<Value>,
    /// The object before a modification, for watchers whose selector it left or entered.
    pub previous: Option<Arc<Value>>,
}

#[derive(Debug, Clone)]
struct Entry {
    /// The object as the lab projected it, without what the store adds.
    content: Value,
    /// The status a controller wrote, served in place of the projection's.
    status: Option<Value>,
    /// The object as served.
    served: Arc<Value>,
    uid: String,
    created: String,
}

/// How many changes watchers may resume from.
pub const HISTORY: usize = 100_000;

#[derive(Debug, Default)]
pub struct Store {
    rv: u64,
    /// The version this store started at: a client that resumes from an older one watched
    /// another store (a lab's process before it was started again) and must list again.
    base: u64,
    objects: BTreeMap<Key, Entry>,
    history: VecDeque<Event>,
}

/// Why a status write is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusError {
    /// No such object.
    NotFound,
    /// Not a kind whose status a controller writes.
    NotWritable,
}

/// A resource version older than the history holds: the watcher must list again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooOld {
    pub oldest: u64,
}

fn uid(key: &Key, rv: u64) -> String {
    let h = podnet_model::names::fnv64(&[
        key.kind.as_str().as_bytes(),
        key.namespace.as_bytes(),
        key.name.as_bytes(),
        &rv.to_le_bytes(),
    ]);
    let g = podnet_model::names::fnv64(&[&h.to_le_bytes(), b"podnet"]);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xfff,
        (g >> 48) & 0xfff,
        g & 0xffff_ffff_ffff
    )
}

fn stamp(content: &Value, status: Option<&Value>, rv: u64, uid: &str, created: &str) -> Value {
    let mut v = content.clone();
    if let (Some(st), Some(o)) = (status, v.as_object_mut()) {
        o.insert("status".into(), st.clone());
    }
    let meta = v
        .as_object_mut()
        .expect("an object")
        .entry("metadata")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Some(m) = meta.as_object_mut() {
        m.insert("resourceVersion".into(), Value::String(rv.to_string()));
        m.insert("uid".into(), Value::String(uid.into()));
        m.insert("creationTimestamp".into(), Value::String(created.into()));
    }
    v
}

impl Store {
    /// An empty store whose versions start after `base` (an API that is started again
    /// continues after the versions its clients may hold: the time in microseconds will do).
    pub fn starting_at(base: u64) -> Store {
        Store {
            rv: base,
            base,
            ..Store::default()
        }
    }

    /// The latest resource version.
    pub fn rv(&self) -> u64 {
        self.rv
    }

    /// Takes an object out, as a Deleted event.
    fn delete(&mut self, key: Key, events: &mut Vec<Event>) {
        let e = self.objects.remove(&key).expect("held");
        self.rv += 1;
        let object = Arc::new(stamp(
            &e.content,
            e.status.as_ref(),
            self.rv,
            &e.uid,
            &e.created,
        ));
        events.push(Event {
            rv: self.rv,
            kind: EventType::Deleted,
            key,
            object,
            previous: Some(e.served),
        });
    }

    /// Replaces every object with `objects` (as projected, with `kind` and `apiVersion`) and
    /// returns the changes. `now` is the creation time of new objects (RFC 3339).
    pub fn replace(&mut self, objects: Vec<Value>, now: &str) -> Vec<Event> {
        let mut fresh: BTreeMap<Key, Value> = BTreeMap::new();
        for o in objects {
            if let Some(k) = Key::of(&o) {
                fresh.insert(k, o);
            }
        }
        let mut events = Vec::new();
        // Deletions first (a Service's ClusterIP or node port is free before another takes
        // it, as the API server's allocators see to), but a NetworkPolicy's only after the new
        // and changed objects: a policy that replaces another is in force before the other
        // goes, so a watcher never sees a moment with neither (a window of allow).
        let (gone_policies, gone): (Vec<Key>, Vec<Key>) = self
            .objects
            .keys()
            .filter(|k| !fresh.contains_key(*k))
            .cloned()
            .partition(|k| matches!(k.kind, Kind::NetworkPolicy | Kind::ClusterNetworkPolicy));
        for key in gone {
            self.delete(key, &mut events);
        }
        for (key, content) in fresh {
            let (kind, uid, created, previous, status) = match self.objects.get(&key) {
                Some(e) if e.content == content => continue,
                Some(e) => (
                    EventType::Modified,
                    e.uid.clone(),
                    e.created.clone(),
                    Some(e.served.clone()),
                    e.status.clone(),
                ),
                // A creation time the lab already gave (it orders Gateway API routes) stands.
                None => (
                    EventType::Added,
                    uid(&key, self.rv + 1),
                    content["metadata"]["creationTimestamp"]
                        .as_str()
                        .unwrap_or(now)
                        .to_string(),
                    None,
                    None,
                ),
            };
            self.rv += 1;
            let served = Arc::new(stamp(&content, status.as_ref(), self.rv, &uid, &created));
            self.objects.insert(
                key.clone(),
                Entry {
                    content,
                    status,
                    served: served.clone(),
                    uid,
                    created,
                },
            );
            events.push(Event {
                rv: self.rv,
                kind,
                key,
                object: served,
                previous,
            });
        }
        for key in gone_policies {
            self.delete(key, &mut events);
        }
        self.history.extend(events.iter().cloned());
        while self.history.len() > HISTORY {
            self.history.pop_front();
        }
        events
    }

    /// A controller's write of `key`'s status: `status` replaces what the object had (a
    /// merge patch is merged by the caller into what [`Store::get`] gave). One Modified
    /// event, none when nothing changed; the object as served now.
    pub fn write_status(&mut self, key: &Key, status: Value) -> Result<Arc<Value>, StatusError> {
        if !key.kind.status_by_controllers() {
            return Err(StatusError::NotWritable);
        }
        let e = self.objects.get_mut(key).ok_or(StatusError::NotFound)?;
        if e.served.get("status") == Some(&status) {
            return Ok(e.served.clone());
        }
        self.rv += 1;
        let previous = e.served.clone();
        e.status = Some(status);
        e.served = Arc::new(stamp(
            &e.content,
            e.status.as_ref(),
            self.rv,
            &e.uid,
            &e.created,
        ));
        let event = Event {
            rv: self.rv,
            kind: EventType::Modified,
            key: key.clone(),
            object: e.served.clone(),
            previous: Some(previous),
        };
        let served = e.served.clone();
        self.history.push_back(event);
        while self.history.len() > HISTORY {
            self.history.pop_front();
        }
        Ok(served)
    }

    /// The objects of a resource, in one namespace or all.
    pub fn list(&self, r: &Resource, namespace: Option<&str>) -> Vec<Arc<Value>> {
        self.objects
            .iter()
            .filter(|(k, _)| k.kind == r.kind && namespace.is_none_or(|ns| k.namespace == ns))
            .map(|(_, e)| e.served.clone())
            .collect()
    }

    pub fn get(&self, key: &Key) -> Option<Arc<Value>> {
        self.objects.get(key).map(|e| e.served.clone())
    }

    /// The changes after resource version `rv`.
    pub fn since(&self, rv: u64) -> Result<Vec<Event>, TooOld> {
        if rv < self.base {
            return Err(TooOld {
                oldest: self.base + 1,
            });
        }
        if rv >= self.rv {
            return Ok(Vec::new());
        }
        let oldest = self.history.front().map_or(self.rv + 1, |e| e.rv);
        // Versions before the first recorded change are fine while nothing was dropped.
        if rv + 1 < oldest && self.history.len() >= HISTORY {
            return Err(TooOld { oldest });
        }
        let start = self.history.partition_point(|e| e.rv <= rv);
        Ok(self.history.range(start..).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, app: &str) -> Value {
        json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": name, "namespace": "default", "labels": {"app": app}}})
    }

    #[test]
    fn changes_get_versions_and_objects_keep_their_identity() {
        let mut s = Store::default();
        let first = s.replace(vec![pod("a", "x"), pod("b", "x")], "2026-01-01T00:00:00Z");
        assert_eq!(first.len(), 2);
        assert!(first.iter().all(|e| e.kind == EventType::Added));
        let uid_a = first[0].object["metadata"]["uid"].clone();
        // Nothing changed: no event, no new version.
        assert!(s
            .replace(vec![pod("a", "x"), pod("b", "x")], "later")
            .is_empty());
        assert_eq!(s.rv(), 2);
        let second = s.replace(vec![pod("a", "y")], "2026-01-02T00:00:00Z");
        let kinds: Vec<(EventType, &str)> = second
            .iter()
            .map(|e| (e.kind, e.key.name.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [(EventType::Deleted, "b"), (EventType::Modified, "a")]
        );
        let a = &second[1].object;
        assert_eq!(a["metadata"]["uid"], uid_a);
        assert_eq!(a["metadata"]["resourceVersion"], "4");
        assert_eq!(a["metadata"]["creationTimestamp"], "2026-01-01T00:00:00Z");
        assert_eq!(
            second[1].previous.as_ref().unwrap()["metadata"]["labels"]["app"],
            "x"
        );
        // A watcher at version 2 gets both changes; at 3, the last.
        let later = Store::starting_at(1_000);
        assert_eq!(
            later.since(999).unwrap_err().oldest,
            1_001,
            "another store's version"
        );
        assert!(later.since(1_000).unwrap().is_empty());
        assert_eq!(s.since(2).unwrap().len(), 2);
        assert_eq!(s.since(3).unwrap().len(), 1);
        assert!(s.since(4).unwrap().is_empty());
        let pods = resources::by_kind(Kind::Pod).unwrap();
        assert_eq!(s.list(pods, Some("default")).len(), 1);
        assert!(s.list(pods, Some("other")).is_empty());
    }

    /// A NetworkPolicy that replaces another is in force before the other goes: never a
    /// moment with neither.
    #[test]
    fn a_replacing_policy_comes_before_the_one_it_replaces_goes() {
        let policy = |name: &str| json!({"kind": "NetworkPolicy", "apiVersion": "networking.k8s.io/v1", "metadata": {"name": name, "namespace": "default"}, "spec": {"podSelector": {}}});
        let mut s = Store::default();
        s.replace(vec![policy("old"), pod("a", "x")], "t");
        let events = s.replace(vec![policy("new"), pod("b", "x")], "t");
        let order: Vec<(EventType, &str)> = events
            .iter()
            .map(|e| (e.kind, e.key.name.as_str()))
            .collect();
        assert_eq!(
            order,
            [
                (EventType::Deleted, "a"),
                (EventType::Added, "new"),
                (EventType::Added, "b"),
                (EventType::Deleted, "old")
            ]
        );
        let rvs: Vec<u64> = events.iter().map(|e| e.rv).collect();
        assert!(rvs.windows(2).all(|w| w[0] < w[1]), "{rvs:?}");
    }
}
