//! Watches of every kind the model is kept from ([`KINDS`]), as one stream of updates that
//! keep an [`ApiModel`] current: each watch event is one object's change, handed to the model
//! typed (kube-rs decodes the built-in kinds; the Gateway API's custom resources are decoded
//! into podnet's types here, as strictly as a manifest), applied on its own
//! ([`ApiModel::apply_received`]), and says which part of the model changed.
//!
//! A watch that restarts (the API server went away, or its history expired: 410 Gone) lists
//! its kind again; the list replaces what the model held of that kind, so an object deleted
//! while the watch was down is deleted then.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, NetworkPolicy};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::DynamicObject;
use kube::runtime::{watcher, WatchStreamExt};
use podnet_model::gateway_api;
use podnet_model::objects::{from_api, from_api_json, Object, Typed};
use podnet_model::{ApiKey, ApiModel, Changed, ModelError};
use tokio::sync::mpsc;

use prometheus_client::metrics::counter::Counter;

pub use podnet_model::api::{ALL_KINDS, EDGE_KINDS, KINDS};
use podnet_model::Kind;

/// One step of one kind's watch, and when the watch received it.
#[derive(Debug)]
pub struct Update(pub Step, pub Instant);

/// An object as received: typed, or why it could not be.
pub type Received = Result<Object, ModelError>;

/// One step of one kind's watch.
#[derive(Debug)]
pub enum Step {
    /// An object added or changed, or deleted (None). (Boxed: an object is large, a
    /// deletion small.)
    Object(ApiKey, Option<Box<Received>>),
    /// Every object of a kind, listed: those the model holds and the list lacks are gone.
    Listed(Kind, Vec<(ApiKey, Received)>),
}

/// The watches, and what each kind holds.
pub struct ClusterWatch {
    rx: mpsc::UnboundedReceiver<Update>,
    /// How many kinds are watched.
    kinds: usize,
    held: HashMap<Kind, HashSet<ApiKey>>,
    listed: HashSet<Kind>,
    /// Pods' addresses that the CNI plugin gave them and the API does not show yet (the
    /// kubelet writes a pod's IP only after its ADD returned, and the ADD waits for this
    /// node's agent): a Pod with no IP of its own is read with this one.
    hints: std::collections::BTreeMap<ApiKey, std::net::IpAddr>,
    /// The Pods as the API last served them while they had no IP (few: pods starting), to
    /// read again when a hint comes or goes.
    no_ip: HashMap<ApiKey, Object>,
}

/// A Pod without an address of its own (None: a Pod with one, or not a Pod).
fn without_ip(obj: &Received) -> Option<&Object> {
    match obj {
        Ok(o @ Object::Pod(p)) => {
            let ip = p.obj.status.as_ref().and_then(|s| s.pod_ip.as_deref());
            ip.is_none_or(str::is_empty).then_some(o)
        }
        _ => None,
    }
}

/// The Pod with the address the CNI plugin gave it.
fn with_ip(pod: &Object, ip: std::net::IpAddr) -> Object {
    let mut p = pod.clone();
    if let Object::Pod(p) = &mut p {
        let status = p.obj.status.get_or_insert_with(Default::default);
        status.pod_ip = Some(ip.to_string());
        status.pod_ips = Some(vec![k8s_openapi::api::core::v1::PodIP {
            ip: ip.to_string(),
        }]);
    }
    p
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
    pub fn start(client: &kube::Client, errors: Counter) -> ClusterWatch {
        Self::start_kinds(client, &KINDS, errors)
    }

    /// Starts a watch of these kinds only (the cluster DNS reads no NetworkPolicy or Node).
    /// `errors` counts the watches' errors (each is retried with backoff).
    pub fn start_kinds(client: &kube::Client, kinds: &[Kind], errors: Counter) -> ClusterWatch {
        let (tx, rx) = mpsc::unbounded_channel();
        for &kind in kinds {
            let (tx, m) = (tx.clone(), errors.clone());
            match kind {
                Kind::Namespace => watch::<Namespace>(client, tx, m),
                Kind::Node => watch::<Node>(client, tx, m),
                Kind::Pod => watch::<Pod>(client, tx, m),
                Kind::Service => watch::<Service>(client, tx, m),
                Kind::EndpointSlice => watch::<EndpointSlice>(client, tx, m),
                Kind::NetworkPolicy => watch::<NetworkPolicy>(client, tx, m),
                Kind::Ingress => watch::<Ingress>(client, tx, m),
                Kind::IngressClass => watch::<IngressClass>(client, tx, m),
                Kind::Secret => watch::<Secret>(client, tx, m),
                Kind::ConfigMap => watch::<k8s_openapi::api::core::v1::ConfigMap>(client, tx, m),
                // The Gateway API's kinds: custom resources, decoded into podnet's types.
                Kind::GatewayClass => custom::<gateway_api::GatewayClass>(client, tx, m),
                Kind::Gateway => custom::<gateway_api::Gateway>(client, tx, m),
                Kind::HTTPRoute => custom::<gateway_api::HTTPRoute>(client, tx, m),
                Kind::TLSRoute => custom::<gateway_api::TLSRoute>(client, tx, m),
                Kind::GRPCRoute => custom::<gateway_api::GRPCRoute>(client, tx, m),
                Kind::BackendTLSPolicy => custom::<gateway_api::BackendTLSPolicy>(client, tx, m),
                Kind::ReferenceGrant => custom::<gateway_api::ReferenceGrant>(client, tx, m),
                Kind::ListenerSet => custom::<gateway_api::ListenerSet>(client, tx, m),
                Kind::ClusterNetworkPolicy => {
                    custom::<podnet_model::policy_api::ClusterNetworkPolicy>(client, tx, m)
                }
                // Kinds the model does not take from the API.
                Kind::Endpoints
                | Kind::Deployment
                | Kind::ReplicaSet
                | Kind::StatefulSet
                | Kind::DaemonSet
                | Kind::ClusterConfig => {
                    tracing::warn!("{kind} is not watched: the model does not read it")
                }
            }
        }
        ClusterWatch {
            rx,
            kinds: ALL_KINDS.iter().filter(|k| kinds.contains(k)).count(),
            held: HashMap::new(),
            listed: HashSet::new(),
            hints: Default::default(),
            no_ip: HashMap::new(),
        }
    }

    /// The addresses the CNI plugin told this node's agent, not yet in the API.
    pub fn hints(&self) -> &std::collections::BTreeMap<ApiKey, std::net::IpAddr> {
        &self.hints
    }

    /// The CNI plugin gave the pod `key` the address `ip` (None: the pod's attachment is
    /// gone): the model reads the pod with it until the API shows an address of its own.
    pub fn hint(
        &mut self,
        key: ApiKey,
        ip: Option<std::net::IpAddr>,
        model: &mut ApiModel,
    ) -> Round {
        let mut round = Round::default();
        let api_has_ip = self.held.get(&Kind::Pod).is_some_and(|h| h.contains(&key))
            && !self.no_ip.contains_key(&key);
        match ip {
            // The API already shows the pod's address (a repeated ADD): it is the truth.
            Some(_) if api_has_ip => {}
            Some(ip) => {
                self.hints.insert(key.clone(), ip);
            }
            None => {
                self.hints.remove(&key);
            }
        }
        if let Some(pod) = self.no_ip.get(&key).cloned() {
            self.one(&key, Some(Ok(pod)), model, &mut round);
        }
        round
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
            Step::Object(key, obj) => self.one(&key, obj.map(|o| *o), model, round),
            Step::Listed(kind, objects) => {
                let now: HashSet<ApiKey> = objects.iter().map(|(k, _)| k.clone()).collect();
                let gone: Vec<ApiKey> = self
                    .held
                    .get(&kind)
                    .map(|h| h.difference(&now).cloned().collect())
                    .unwrap_or_default();
                for key in gone {
                    self.one(&key, None, model, round);
                }
                for (key, obj) in objects {
                    self.one(&key, Some(obj), model, round);
                }
                self.listed.insert(kind);
            }
        }
    }

    fn one(
        &mut self,
        key: &ApiKey,
        obj: Option<Received>,
        model: &mut ApiModel,
        round: &mut Round,
    ) {
        if ALL_KINDS.contains(&key.kind) {
            let held = self.held.entry(key.kind).or_default();
            match obj {
                Some(_) => held.insert(key.clone()),
                None => held.remove(key),
            };
        }
        let mut obj = obj;
        if key.kind == Kind::Pod {
            match obj.as_ref().map(without_ip) {
                Some(Some(pod)) => {
                    let pod = pod.clone();
                    if let Some(ip) = self.hints.get(key) {
                        obj = Some(Ok(with_ip(&pod, *ip)));
                    }
                    self.no_ip.insert(key.clone(), pod);
                }
                // The API knows the pod's address now (it is the truth), or the pod went.
                Some(None) | None => {
                    self.no_ip.remove(key);
                    self.hints.remove(key);
                }
            }
        }
        let out = model.apply_received(key, obj);
        round.events += 1;
        if let Some(why) = out.why() {
            round.refused.push((key.clone(), why));
        }
        round.changed.extend(out.changed);
    }
}

/// The key of an object of `kind` the API served.
fn key_of(kind: Kind, meta: &ObjectMeta) -> ApiKey {
    let ns = if kind.namespaced() {
        meta.namespace.as_deref().unwrap_or("default")
    } else {
        ""
    };
    ApiKey::new(kind, ns, meta.name.as_deref().unwrap_or_default())
}

/// Starts a watch of every object of a built-in kind `K`, in every namespace, sending its
/// updates to `tx` typed as kube-rs decoded them.
fn watch<K>(client: &kube::Client, tx: mpsc::UnboundedSender<Update>, errors: Counter)
where
    K: Typed + kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
{
    debug_assert_eq!(K::kind(&()), K::KIND.as_str());
    let api: kube::Api<K> = kube::Api::all(client.clone());
    watch_api(api, K::KIND, tx, errors, |o: K, key: &ApiKey| {
        Ok(from_api(pruned(o), &key.origin()))
    });
}

/// An object as it arrives, without what nothing downstream reads, before it is held (a
/// first list holds every object of its kind at once): every object's `managedFields` (as
/// kube-rs advises for reflectors), and of a Pod all but what the model reads of it (its
/// labels, node, containers' names and ports, DNS fields, and its status's phase, conditions
/// and addresses). A real Pod's containers (images, env, volumes, resources) and statuses are
/// most of its size.
fn pruned<K: kube::Resource + 'static>(mut o: K) -> K {
    o.meta_mut().managed_fields = None;
    if let Some(p) = (&mut o as &mut dyn std::any::Any).downcast_mut::<Pod>() {
        prune_pod(p);
    }
    o
}

fn prune_pod(p: &mut Pod) {
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodStatus};
    p.metadata.annotations = None;
    if let Some(s) = p.spec.as_mut() {
        *s = PodSpec {
            containers: std::mem::take(&mut s.containers)
                .into_iter()
                .map(|c| Container {
                    name: c.name,
                    ports: c.ports,
                    ..Default::default()
                })
                .collect(),
            node_name: s.node_name.take(),
            ..podnet_model::convert::read_spec_fields(s)
        };
    }
    if let Some(st) = p.status.as_mut() {
        *st = PodStatus {
            phase: st.phase.take(),
            conditions: st.conditions.take(),
            pod_ip: st.pod_ip.take(),
            pod_ips: st.pod_ips.take(),
            ..Default::default()
        };
    }
}

/// Starts a watch of every object of a custom resource `T` (the Gateway API's), sending its
/// updates to `tx` decoded into `T` as strictly as a manifest.
fn custom<T: Typed>(client: &kube::Client, tx: mpsc::UnboundedSender<Update>, errors: Counter) {
    let kind = T::KIND;
    let gvk = kube::api::GroupVersionKind::gvk(kind.group(), kind.version(), kind.as_str());
    let ar = kube::api::ApiResource::from_gvk_with_plural(&gvk, kind.plural());
    let api: kube::Api<DynamicObject> = kube::Api::all_with(client.clone(), &ar);
    watch_api(api, kind, tx, errors, |o: DynamicObject, key: &ApiKey| {
        let v = serde_json::to_value(&o).expect("API objects serialize");
        from_api_json::<T>(&v, &key.origin()).map_err(|d| ModelError::Invalid(vec![d]))
    });
}

/// Watches every object of an API, sending its updates to `tx` as objects of `kind`, each
/// made typed by `typed`.
fn watch_api<K>(
    api: kube::Api<K>,
    kind: Kind,
    tx: mpsc::UnboundedSender<Update>,
    errors: Counter,
    typed: impl Fn(K, &ApiKey) -> Received + Send + Sync + 'static,
) where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    tokio::spawn(async move {
        futures_util::pin_mut!(stream);
        let mut listing: Option<Vec<(ApiKey, Received)>> = None;
        let mut missing_crd = false;
        let received = |o: K| {
            let key = key_of(kind, o.meta());
            let obj = typed(o, &key);
            (key, obj)
        };
        while let Some(ev) = stream.next().await {
            let at = Instant::now();
            let send = |step| tx.send(Update(step, at));
            let sent = match ev {
                Ok(watcher::Event::Apply(o)) => {
                    let (k, o) = received(o);
                    send(Step::Object(k, Some(Box::new(o))))
                }
                Ok(watcher::Event::Delete(o)) => send(Step::Object(key_of(kind, o.meta()), None)),
                Ok(watcher::Event::Init) => {
                    listing = Some(Vec::new());
                    Ok(())
                }
                Ok(watcher::Event::InitApply(o)) => {
                    if let Some(l) = listing.as_mut() {
                        l.push(received(o));
                    }
                    Ok(())
                }
                Ok(watcher::Event::InitDone) => {
                    send(Step::Listed(kind, listing.take().unwrap_or_default()))
                }
                // A custom resource whose CRD the cluster does not have (ClusterNetworkPolicy
                // on a cluster without network-policy-api's CRDs): none of its objects exist.
                // Said once, listed as empty so that the rest is not held up, and still
                // watched: objects appear once the CRD is installed.
                Err(watcher::Error::InitialListFailed(kube::Error::Api(s)))
                    if s.code == 404 && kind.is_custom() =>
                {
                    errors.inc();
                    if !missing_crd {
                        missing_crd = true;
                        tracing::warn!(
                            "{kind}: the cluster serves no {} (its CustomResourceDefinition is not installed): none applies until it is",
                            kind.api_version()
                        );
                        send(Step::Listed(kind, Vec::new()))
                    } else {
                        Ok(())
                    }
                }
                Err(e) => {
                    errors.inc();
                    // The whole chain: "client error (Connect)" alone does not say
                    // whether it was refused, unreachable or timed out.
                    tracing::warn!(
                        "watching {kind}: {} (retrying)",
                        podnet_model::diag::chain(&e)
                    );
                    Ok(())
                }
            };
            if sent.is_err() {
                return; // Nobody listens any more.
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use podnet_model::NsName;
    use serde_json::json;

    #[test]
    fn a_pod_keeps_what_the_model_reads_and_nothing_else() {
        let full: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                "annotations": {"big": "x"}, "deletionTimestamp": "2026-01-01T00:00:00Z",
                "managedFields": [{"manager": "kubelet"}]},
            "spec": {"nodeName": "node-1", "hostname": "h", "subdomain": "s", "dnsPolicy": "None",
                "dnsConfig": {"nameservers": ["1.1.1.1"]}, "hostAliases": [{"ip": "1.2.3.4", "hostnames": ["a"]}],
                "volumes": [{"name": "v", "emptyDir": {}}],
                "containers": [{"name": "c", "image": "nginx", "env": [{"name": "A", "value": "1"}],
                    "ports": [{"containerPort": 80, "name": "http"}]}]},
            "status": {"phase": "Running", "podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}],
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "c", "image": "nginx", "imageID": "x", "ready": true, "restartCount": 0}]}
        }))
        .unwrap();
        let p = pruned(full.clone());
        assert_eq!(p.metadata.managed_fields, None);
        assert_eq!(p.metadata.annotations, None);
        assert_eq!(p.metadata.labels, full.metadata.labels);
        assert_eq!(
            p.metadata.deletion_timestamp,
            full.metadata.deletion_timestamp
        );
        let (s, f) = (p.spec.as_ref().unwrap(), full.spec.as_ref().unwrap());
        assert_eq!(s.volumes, None);
        assert_eq!(s.containers[0].image, None);
        assert_eq!(s.containers[0].env, None);
        assert_eq!(s.containers[0].ports, f.containers[0].ports);
        assert_eq!(
            (
                &s.node_name,
                &s.hostname,
                &s.subdomain,
                &s.dns_policy,
                &s.dns_config,
                &s.host_aliases
            ),
            (
                &f.node_name,
                &f.hostname,
                &f.subdomain,
                &f.dns_policy,
                &f.dns_config,
                &f.host_aliases
            )
        );
        let (st, ft) = (p.status.as_ref().unwrap(), full.status.as_ref().unwrap());
        assert_eq!(st.container_statuses, None);
        assert_eq!(
            (&st.phase, &st.pod_ip, &st.pod_ips, &st.conditions),
            (&ft.phase, &ft.pod_ip, &ft.pod_ips, &ft.conditions)
        );
        // What the model makes of it is the same either way.
        let key = ApiKey::new(Kind::Pod, "default", "web");
        let of = |p: Pod| {
            let mut m = podnet_model::ApiModel::new(&Default::default()).unwrap();
            let out = m.apply_received(&key, Some(Ok(from_api(p, &key.origin()))));
            assert!(out.refused.is_none());
            m.cluster().pods.clone()
        };
        assert_eq!(of(p), of(full));
    }

    fn watch() -> ClusterWatch {
        let (_tx, rx) = mpsc::unbounded_channel();
        ClusterWatch {
            rx,
            kinds: 1,
            held: HashMap::new(),
            listed: HashSet::new(),
            hints: Default::default(),
            no_ip: HashMap::new(),
        }
    }

    fn pod(ip: Option<&str>) -> Received {
        let v = pod_json(ip);
        Ok(from_api(
            serde_json::from_value::<Pod>(v).unwrap(),
            &key().origin(),
        ))
    }

    fn pod_json(ip: Option<&str>) -> serde_json::Value {
        let mut p = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "x"}]},
            "status": {"phase": "Pending"}
        });
        if let Some(ip) = ip {
            p["status"]["podIP"] = json!(ip);
            p["status"]["podIPs"] = json!([{"ip": ip}]);
            p["status"]["phase"] = json!("Running");
        }
        p
    }

    fn ips(m: &ApiModel) -> Vec<std::net::IpAddr> {
        m.cluster()
            .pod("default", "web")
            .map(|p| p.ips.clone())
            .unwrap_or_default()
    }

    fn key() -> ApiKey {
        ApiKey::new(Kind::Pod, "default", "web")
    }

    #[test]
    fn a_pod_without_an_ip_is_read_with_the_one_its_cni_add_told() {
        let mut m = ApiModel::new(&Default::default()).unwrap();
        let mut w = watch();
        let mut r = Round::default();
        w.one(&key(), Some(pod(None)), &mut m, &mut r);
        assert!(ips(&m).is_empty());
        let ip: std::net::IpAddr = "10.244.1.9".parse().unwrap();
        // The plugin's ADD: the pod changes (NetworkPolicy reads its address).
        let r = w.hint(key(), Some(ip), &mut m);
        assert_eq!(ips(&m), vec![ip]);
        assert!(
            r.changed
                .contains(&Changed::Pod(NsName::new("default", "web"))),
            "{r:?}"
        );
        // The API writes the pod again, still without its address: the hint holds.
        let mut r = Round::default();
        w.one(&key(), Some(pod(None)), &mut m, &mut r);
        assert_eq!(ips(&m), vec![ip]);
        // The API shows the address: it is the truth, and the hint goes.
        w.one(&key(), Some(pod(Some("10.244.1.9"))), &mut m, &mut r);
        assert_eq!(ips(&m), vec![ip]);
        assert!(w.hints().is_empty());
        // A later ADD for a pod the API shows with an address records nothing.
        w.hint(key(), Some("10.244.1.10".parse().unwrap()), &mut m);
        assert!(w.hints().is_empty());
        assert_eq!(ips(&m), vec![ip]);
    }

    #[test]
    fn a_hint_before_the_pod_applies_when_it_comes_and_goes_with_del_or_the_pod() {
        let mut m = ApiModel::new(&Default::default()).unwrap();
        let mut w = watch();
        let ip: std::net::IpAddr = "10.244.1.9".parse().unwrap();
        // The ADD comes before the agent's watch shows the pod.
        let r = w.hint(key(), Some(ip), &mut m);
        assert!(r.changed.is_empty());
        let mut r = Round::default();
        w.one(&key(), Some(pod(None)), &mut m, &mut r);
        assert_eq!(ips(&m), vec![ip]);
        // DEL: the pod is read as the API shows it again.
        w.hint(key(), None, &mut m);
        assert!(ips(&m).is_empty());
        // A hint for a pod the API deletes goes with it.
        w.hint(key(), Some(ip), &mut m);
        w.one(&key(), None, &mut m, &mut r);
        assert!(w.hints().is_empty());
        assert!(m.cluster().pod("default", "web").is_none());
    }
}
