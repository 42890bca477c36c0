//! ListenerSets: listeners of a Gateway kept in objects of their own, as
//! `gateway.networking.k8s.io/v1` documents them:
//! - a set names its Gateway (`parentRef`); the Gateway takes it when `allowedListeners`
//!   admits the set's namespace (`from`: None, the default, takes none; Same, All, Selector),
//!   else the set is Accepted and Programmed False, NotAllowed;
//! - the Gateway's listeners are its own, then those of the sets it takes, the oldest set
//!   first (then by namespace and name); a set's listener that conflicts with one before it
//!   (same port and another protocol, or the same hostname) is not Accepted, with the
//!   conflict as its reason, and the one before it is served;
//! - a set's listeners take routes whose parentRef names the set (a Gateway parentRef does
//!   not reach them, nor a set parentRef the Gateway's), `allowedRoutes` judged from the
//!   set's namespace; its certificates are Secrets of the set's namespace, or of another
//!   whose ReferenceGrant admits ListenerSets of the set's;
//! - a set with a listener served is Accepted and Programmed; one with none, False with
//!   ListenersNotValid; the Gateway counts the sets attached (`attachedListenerSets`).

use super::*;
use podnet_model::gateway_api::{ListenerSet, ListenerSetStatus};

/// A ListenerSet that names a Gateway, and whether the Gateway takes it.
#[derive(Debug, Clone)]
pub(super) struct Judged<'a> {
    pub(super) set: &'a ListenerSet,
    pub(super) key: NsName,
    pub(super) allowed: bool,
}

/// The Gateway a ListenerSet names.
pub(super) fn parent_of(s: &ListenerSet) -> NsName {
    let p = &s.spec.parent_ref;
    NsName::new(
        p.namespace.as_deref().unwrap_or(ns_of(&s.metadata)),
        &p.name,
    )
}

/// The ListenerSets that name `g`, in the Gateway's order (the oldest first, then by
/// namespace and name), each with whether `g` takes it.
pub(super) fn sets_of<'a>(c: &'a Cluster, g: &Gateway) -> Vec<Judged<'a>> {
    let gw = key_of(&g.metadata);
    let mut out: Vec<Judged<'a>> = c
        .listener_sets
        .iter()
        .map(|s| &s.obj)
        .filter(|s| {
            let p = &s.spec.parent_ref;
            p.group.as_deref().unwrap_or(GROUP) == GROUP
                && p.kind.as_deref().unwrap_or("Gateway") == "Gateway"
                && parent_of(s) == gw
        })
        .map(|s| Judged {
            set: s,
            key: key_of(&s.metadata),
            allowed: allows(c, g, ns_of(&s.metadata)),
        })
        .collect();
    out.sort_by_key(|j| (j.set.metadata.creation_timestamp.clone(), j.key.clone()));
    out
}

/// Whether the Gateway's `allowedListeners` admits ListenerSets of `ns`.
fn allows(c: &Cluster, g: &Gateway, ns: &str) -> bool {
    let Some(from) = g
        .spec
        .allowed_listeners
        .as_ref()
        .and_then(|a| a.namespaces.as_ref())
    else {
        return false;
    };
    match from.from.as_deref().unwrap_or("None") {
        "All" => true,
        "Same" => ns == ns_of(&g.metadata),
        "Selector" => from.selector.as_ref().is_some_and(|sel| {
            let labels = c
                .namespaces
                .get(ns)
                .map(|n| n.labels.clone())
                .unwrap_or_default();
            podnet_model::selector::matches(sel, &labels)
        }),
        _ => false,
    }
}

/// A set's status: NotAllowed when the Gateway does not take it, else its listeners' (from
/// `states`, the Gateway's merged listeners) and whether any is served.
pub(super) fn status(
    j: &Judged<'_>,
    states: &[ListenerState],
    parent_accepted: bool,
) -> ListenerSetStatus {
    let m = &j.set.metadata;
    let both = |ok: bool, reason: &str, msg: &str| {
        vec![
            condition(m, "Accepted", ok, if ok { "Accepted" } else { reason }, msg),
            condition(
                m,
                "Programmed",
                ok,
                if ok { "Programmed" } else { reason },
                msg,
            ),
        ]
    };
    if !j.allowed {
        return ListenerSetStatus {
            conditions: both(
                false,
                "NotAllowed",
                "the Gateway's allowedListeners does not admit this namespace",
            ),
            listeners: Vec::new(),
        };
    }
    let mine: Vec<&ListenerState> = states
        .iter()
        .filter(|l| l.owner.as_ref() == Some(&j.key))
        .collect();
    let conditions = if !parent_accepted {
        both(false, "ParentNotAccepted", "the Gateway is not accepted")
    } else if mine.iter().any(|l| l.valid) {
        both(true, "", "")
    } else {
        both(
            false,
            "ListenersNotValid",
            "no listener of the set can be served",
        )
    };
    ListenerSetStatus {
        conditions,
        listeners: mine.iter().map(|l| l.status()).collect(),
    }
}
