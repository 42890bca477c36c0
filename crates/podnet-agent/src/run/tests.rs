//! The agent's loop, without a kernel or an API.

use super::*;
use serde_json::json;

fn cluster(pod_ip: Option<&str>, policy: bool) -> podnet_model::Cluster {
    let mut objects = vec![json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "node-1"},
        "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]},
        "status": {"addresses": [{"type": "InternalIP", "address": "172.18.0.3"}]}
    })];
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "x"}]},
        "status": {"phase": "Running"}
    });
    if let Some(ip) = pod_ip {
        pod["status"]["podIP"] = json!(ip);
        pod["status"]["podIPs"] = json!([{ "ip": ip }]);
    }
    objects.push(pod);
    if policy {
        objects.push(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "deny", "namespace": "default"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
        }));
    }
    crate::translate::model(&objects, &Default::default()).unwrap()
}

fn want(c: &podnet_model::Cluster) -> NodeDataplane {
    Live::new(c, "node-1", "eth0").unwrap().dataplane().clone()
}

#[test]
fn a_pod_is_programmed_once_its_node_holds_both_of_its_policy_entries() {
    let pod = podnet_model::NsName::new("default", "web");
    let ip: std::net::IpAddr = "10.244.1.9".parse().unwrap();
    for policy in [false, true] {
        let c = cluster(Some("10.244.1.9"), policy);
        let w = want(&c);
        assert_eq!(programmed(&c, "node-1", Some(&w), &pod, ip), Ok(()));
        // What each missing piece is called.
        let mut no_egress = w.clone();
        no_egress.policy.egress.clear();
        assert_eq!(
            programmed(&c, "node-1", Some(&no_egress), &pod, ip),
            Err(Unprogrammed::NoPolicyEntry {
                ip,
                missing: vec!["egress"]
            })
        );
        let mut none = w.clone();
        none.policy.egress.clear();
        none.policy.ingress.clear();
        assert_eq!(
            programmed(&c, "node-1", Some(&none), &pod, ip),
            Err(Unprogrammed::NoPolicyEntry {
                ip,
                missing: vec!["ingress", "egress"]
            })
        );
        assert_eq!(
            programmed(&c, "node-1", Some(&none), &pod, ip)
                .unwrap_err()
                .to_string(),
            "the node's policy maps have no ingress and egress entry for 10.244.1.9"
        );
        assert_eq!(
            programmed(&c, "node-1", None, &pod, ip),
            Err(Unprogrammed::NoNode("node-1".into()))
        );
    }
    let c = cluster(None, false);
    let e = programmed(&c, "node-1", Some(&want(&c)), &pod, ip).unwrap_err();
    assert!(matches!(e, Unprogrammed::OtherAddress { .. }), "{e}");
    let e = programmed(&c, "node-2", Some(&want(&c)), &pod, ip).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Pod default/web is on node node-1, not on this node (node-2)"
    );
    let other = podnet_model::NsName::new("default", "ghost");
    let e = programmed(&c, "node-1", Some(&want(&c)), &other, ip).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the API has no Pod default/ghost (yet: the agent watches for it)"
    );
}
