//! The API-to-model translation: a cluster projected into the API's objects (as the lab serves
//! them, and as JSON round-trips them) and read back gives every node the same dataplane,
//! policy table and DNS records as the cluster itself.

mod common;

use common::{through_json, MANIFESTS};
use podnet_emulator::build;
use podnet_model::{parse_documents, ConfigOverrides};
use podnet_node::dataplane::NodeDataplane;
use serde_json::Value;

#[test]
fn a_projected_cluster_read_back_gives_every_node_the_same_dataplane() {
    let o = ConfigOverrides::default();
    let c1 = build(&parse_documents("m.yaml", MANIFESTS).unwrap(), &o).unwrap();
    let mut api = podnet_api::store::Store::default();
    api.replace(podnet_api::project::project(&c1), "2026-01-01T00:00:00Z");
    let served: Vec<Value> = podnet_api::resources::RESOURCES
        .iter()
        .flat_map(|r| api.list(r, None))
        .map(|o| o.as_ref().clone())
        .collect();
    let c2 =
        podnet_agent::translate::model(&through_json(served), &o).unwrap_or_else(|e| panic!("{e}"));
    assert!(c2.warnings.is_empty(), "{:?}", c2.warnings);
    let (d1, d2) = (
        NodeDataplane::for_cluster(&c1, "eth0"),
        NodeDataplane::for_cluster(&c2, "eth0"),
    );
    assert_eq!(d1.len(), 3);
    for (a, b) in d1.iter().zip(&d2) {
        assert_eq!(a.proxy, b.proxy, "{}: proxy", a.node);
        assert_eq!(a.policy, b.policy, "{}: policy", a.node);
        assert_eq!(a, b, "{}", a.node);
    }
    // The pieces that made the tables: the endpoints, taken as served, and the user slice.
    let svc = c2.service("shop", "outside").unwrap();
    assert_eq!(svc.endpoints().count(), 1);
    assert_eq!(
        podnet_model::dns::DnsZone::from_cluster(&c1).to_stored(),
        podnet_model::dns::DnsZone::from_cluster(&c2).to_stored()
    );
    for p in &c1.pods {
        let q = c2.pod(&p.namespace, &p.name).unwrap();
        assert_eq!((&p.node, &p.ips), (&q.node, &q.ips), "{}", p.key());
    }
}

/// An object the model refuses (an EndpointSlice with an invalid address) is left out and
/// said; everything else gives the same dataplane as without it.
#[test]
fn an_object_the_model_refuses_is_left_out_and_the_rest_is_programmed() {
    let o = ConfigOverrides::default();
    let c1 = build(&parse_documents("m.yaml", MANIFESTS).unwrap(), &o).unwrap();
    let mut objects = podnet_api::project::project(&c1);
    objects.push(serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "broken", "namespace": "shop", "labels": {"kubernetes.io/service-name": "outside"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.0.0.999"]}],
        "ports": [{"port": 9000}]
    }));
    assert!(podnet_agent::translate::model(&objects, &o).is_err());
    let (c2, skipped) = podnet_agent::translate::model_skipping(&objects, &o).unwrap();
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(skipped[0].object, "api:EndpointSlice/shop/broken");
    assert!(skipped[0].why.contains("10.0.0.999"), "{}", skipped[0].why);
    assert_eq!(
        NodeDataplane::for_cluster(&c1, "eth0"),
        NodeDataplane::for_cluster(&c2, "eth0")
    );
}
