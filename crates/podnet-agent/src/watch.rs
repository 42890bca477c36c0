//! Watches of every kind the model is kept from ([`KINDS`]), as one stream of updates that
//! keep an [`ApiModel`] current: each watch event is one object's change, applied on its own
//! ([`ApiModel::apply`]), and says which part of the model changed.
//!
//! A watch that restarts (the API server went away, or its history expired: 410 Gone) lists
//! its kind again; the list replaces what the model held of that kind, so an object deleted
//! while the watch was down is deleted then.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, NetworkPolicy};
use kube::runtime::{watcher, WatchStreamExt};
use podnet_model::{ApiKey, ApiModel, Changed};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::metrics::Metrics;

pub use podnet_model::api::{ALL_KINDS, EDGE_KINDS, KINDS};

/// One step of one kind's watch, and when the watch received it.
#[derive(Debug)]
pub struct Update(pub Step, pub Instant);

/// One step of one kind's watch.
#[derive(Debug)]
pub enum Step {
    /// An object added or changed (its JSON as the API serves it), or deleted (None).
    Object(ApiKey, Option<Value>),
    /// Every object of a kind, listed: those the model holds and the list lacks are gone.
    Listed(&'static str, Vec<(ApiKey, Value)>),
}

/// The watches, and what each kind holds.
pub struct ClusterWatch {
    rx: mpsc::UnboundedReceiver<Update>,
    /// How many kinds are watched.
    kinds: usize,
    held: HashMap<&'static str, HashSet<ApiKey>>,
    listed: HashSet<&'static str>,
}

/// What one round of updates did to the model.
#[derive(Debug, Default)]
pub struct Round {
    pub changed: Vec<Changed>,
    /// Watch events applied.
    pub events: usize,
    /// Objects left out, and why.
    pub refused: Vec<(ApiKey, String)>,
    /// When the first of these events was received.
    pub oldest: Option<Instant>,
}

impl ClusterWatch {
    /// Starts a watch of every kind the model is kept from (a node's agent).
    pub fn start(client: &kube::Client, metrics: Arc<Metrics>) -> ClusterWatch {
        Self::start_kinds(client, &KINDS, metrics)
    }

    /// Starts a watch of these kinds only (the cluster DNS reads no NetworkPolicy or Node).
    pub fn start_kinds(
        client: &kube::Client,
        kinds: &[&str],
        metrics: Arc<Metrics>,
    ) -> ClusterWatch {
        let (tx, rx) = mpsc::unbounded_channel();
        let on = |k: &str| kinds.contains(&k);
        if on("Namespace") {
            watch::<Namespace>(client, tx.clone(), metrics.clone());
        }
        if on("Node") {
            watch::<Node>(client, tx.clone(), metrics.clone());
        }
        if on("Pod") {
            watch::<Pod>(client, tx.clone(), metrics.clone());
        }
        if on("Service") {
            watch::<Service>(client, tx.clone(), metrics.clone());
        }
        if on("EndpointSlice") {
            watch::<EndpointSlice>(client, tx.clone(), metrics.clone());
        }
        if on("NetworkPolicy") {
            watch::<NetworkPolicy>(client, tx.clone(), metrics.clone());
        }
        if on("Ingress") {
            watch::<Ingress>(client, tx.clone(), metrics.clone());
        }
        if on("IngressClass") {
            watch::<IngressClass>(client, tx.clone(), metrics.clone());
        }
        if on("Secret") {
            watch::<Secret>(client, tx.clone(), metrics.clone());
        }
        // The Gateway API's kinds: custom resources, watched as the API gives them.
        for kind in ["GatewayClass", "Gateway", "HTTPRoute", "ReferenceGrant"] {
            if on(kind) {
                let plural = match kind {
                    "GatewayClass" => "gatewayclasses",
                    "Gateway" => "gateways",
                    "HTTPRoute" => "httproutes",
                    _ => "referencegrants",
                };
                let gvk =
                    kube::api::GroupVersionKind::gvk(podnet_model::gateway_api::GROUP, "v1", kind);
                let ar = kube::api::ApiResource::from_gvk_with_plural(&gvk, plural);
                let api: kube::Api<kube::api::DynamicObject> =
                    kube::Api::all_with(client.clone(), &ar);
                let k = ALL_KINDS
                    .iter()
                    .find(|k| **k == kind)
                    .copied()
                    .expect("a kind the model reads");
                watch_api(
                    api,
                    k,
                    podnet_model::gateway_api::API_VERSION.to_string(),
                    tx.clone(),
                    metrics.clone(),
                );
            }
        }
        ClusterWatch {
            rx,
            kinds: ALL_KINDS.iter().filter(|k| on(k)).count(),
            held: HashMap::new(),
            listed: HashSet::new(),
        }
    }

    /// Whether every kind watched has been listed once.
    pub fn ready(&self) -> bool {
        self.listed.len() == self.kinds
    }

    /// Waits for at least one update, then applies it and every other one already there.
    /// None when the watches ended.
    pub async fn next(&mut self, model: &mut ApiModel) -> Option<Round> {
        let first = self.rx.recv().await?;
        let mut round = Round::default();
        self.take(first, model, &mut round);
        while let Ok(u) = self.rx.try_recv() {
            self.take(u, model, &mut round);
        }
        round.changed.sort();
        round.changed.dedup();
        Some(round)
    }

    /// Applies updates until every kind has been listed once. False when the watches ended.
    pub async fn until_ready(&mut self, model: &mut ApiModel) -> Option<Round> {
        let mut all = Round::default();
        while !self.ready() {
            let r = self.next(model).await?;
            all.changed.extend(r.changed);
            all.events += r.events;
            all.refused.extend(r.refused);
            all.oldest = all.oldest.or(r.oldest);
        }
        all.changed.sort();
        all.changed.dedup();
        Some(all)
    }

    fn take(&mut self, Update(step, at): Update, model: &mut ApiModel, round: &mut Round) {
        round.oldest = Some(round.oldest.map_or(at, |o| o.min(at)));
        match step {
            Step::Object(key, obj) => self.one(&key, obj.as_ref(), model, round),
            Step::Listed(kind, objects) => {
                let now: HashSet<ApiKey> = objects.iter().map(|(k, _)| k.clone()).collect();
                let gone: Vec<ApiKey> = self
                    .held
                    .get(kind)
                    .map(|h| h.difference(&now).cloned().collect())
                    .unwrap_or_default();
                for key in gone {
                    self.one(&key, None, model, round);
                }
                for (key, obj) in objects {
                    self.one(&key, Some(&obj), model, round);
                }
                self.listed.insert(kind);
            }
        }
    }

    fn one(&mut self, key: &ApiKey, obj: Option<&Value>, model: &mut ApiModel, round: &mut Round) {
        let kind = ALL_KINDS.iter().find(|k| **k == key.kind).copied();
        if let Some(kind) = kind {
            let held = self.held.entry(kind).or_default();
            match obj {
                Some(_) => held.insert(key.clone()),
                None => held.remove(key),
            };
        }
        let out = model.apply(key, obj);
        round.events += 1;
        if let Some(why) = out.why() {
            round.refused.push((key.clone(), why));
        }
        round.changed.extend(out.changed);
    }
}

/// Starts a watch of every object of `K`, in every namespace, sending its updates to `tx`.
fn watch<K>(client: &kube::Client, tx: mpsc::UnboundedSender<Update>, metrics: Arc<Metrics>)
where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + serde::Serialize
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let api: kube::Api<K> = kube::Api::all(client.clone());
    let kind: &'static str = ALL_KINDS
        .iter()
        .find(|k| **k == K::kind(&Default::default()))
        .expect("a kind the model reads");
    let api_version = K::api_version(&Default::default()).to_string();
    watch_api(api, kind, api_version, tx, metrics);
}

/// Watches every object of an API, sending its updates to `tx` as objects of `kind`.
fn watch_api<K>(
    api: kube::Api<K>,
    kind: &'static str,
    api_version: String,
    tx: mpsc::UnboundedSender<Update>,
    metrics: Arc<Metrics>,
) where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + serde::Serialize
        + Send
        + Sync
        + 'static,
{
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    tokio::spawn(async move {
        futures_util::pin_mut!(stream);
        let mut listing: Option<Vec<(ApiKey, Value)>> = None;
        let json = |o: &K| {
            let mut v = serde_json::to_value(o).ok()?;
            // Typed objects serialize without their type; the model reads it.
            v["kind"] = Value::from(kind);
            v["apiVersion"] = Value::from(api_version.as_str());
            Some((ApiKey::of(&v)?, v))
        };
        while let Some(ev) = stream.next().await {
            let at = Instant::now();
            let send = |step| tx.send(Update(step, at));
            let sent = match ev {
                Ok(watcher::Event::Apply(o)) => match json(&o) {
                    Some((k, v)) => send(Step::Object(k, Some(v))),
                    None => Ok(()),
                },
                Ok(watcher::Event::Delete(o)) => match json(&o) {
                    Some((k, _)) => send(Step::Object(k, None)),
                    None => Ok(()),
                },
                Ok(watcher::Event::Init) => {
                    listing = Some(Vec::new());
                    Ok(())
                }
                Ok(watcher::Event::InitApply(o)) => {
                    if let (Some(l), Some(kv)) = (listing.as_mut(), json(&o)) {
                        l.push(kv);
                    }
                    Ok(())
                }
                Ok(watcher::Event::InitDone) => {
                    send(Step::Listed(kind, listing.take().unwrap_or_default()))
                }
                Err(e) => {
                    metrics.watch_error();
                    // The whole chain: "client error (Connect)" alone does not say
                    // whether it was refused, unreachable or timed out.
                    tracing::warn!("watching {kind}: {} (retrying)", podnet_node::chain(&e));
                    Ok(())
                }
            };
            if sent.is_err() {
                return; // Nobody listens any more.
            }
        }
    });
}
