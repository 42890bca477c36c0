//! A new Service's IP families, as the API server's allocators decide them when it is created
//! (`initIPFamilyFields` in kubernetes' `pkg/registry/core/service/storage/alloc.go`): the
//! default `ipFamilyPolicy`, `ipFamilies` inferred from the requested `clusterIPs` or taken
//! from the cluster's service CIDRs (the primary first), and the errors it answers, at their
//! fields, in its words.

use k8s_openapi::api::core::v1::ServiceSpec;
use podnet_model::model::{IpFamily, IpFamilyPolicy};

/// What the API server stores for a Service's families.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Families {
    pub policy: IpFamilyPolicy,
    pub families: Vec<IpFamily>,
}

/// A refusal at a field: (field path, message).
pub(super) type Refusal = (String, String);

/// `cluster`: the families of the cluster's service CIDRs, the primary first. None for an
/// ExternalName Service, which has no families. Values that are not families or policies at
/// all were refused by validation already and are passed over here.
pub(super) fn families(
    spec: &ServiceSpec,
    cluster: &[IpFamily],
) -> Result<Option<Families>, Vec<Refusal>> {
    if spec.type_.as_deref() == Some("ExternalName") {
        return Ok(None);
    }
    let headless = spec.cluster_ip.as_deref() == Some("None");
    let selectorless = spec.selector.as_ref().is_none_or(|s| s.is_empty());
    let policy = match spec.ip_family_policy.as_deref() {
        Some(p) => IpFamilyPolicy::parse(p).unwrap_or(IpFamilyPolicy::SingleStack),
        // Headless and selectorless: dual by default.
        None if headless && selectorless => IpFamilyPolicy::RequireDualStack,
        None => IpFamilyPolicy::SingleStack,
    };
    let mut families: Vec<IpFamily> = spec
        .ip_families
        .iter()
        .flatten()
        .filter_map(|f| IpFamily::parse(f))
        .collect();
    let cluster_ips: Vec<&str> = podnet_model::convert::requested_cluster_ips(spec);
    let mut refused: Vec<Refusal> = Vec::new();
    let invalid_policy = |why: &str| {
        (
            "spec.ipFamilyPolicy".to_string(),
            format!("Invalid value: {:?}: {why}", policy.as_str()),
        )
    };
    if policy == IpFamilyPolicy::SingleStack {
        if cluster_ips.len() == 2 {
            refused.push(invalid_policy(
                "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified",
            ));
        }
        if families.len() == 2 {
            refused.push(invalid_policy(
                "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified",
            ));
        }
    }
    // Two addresses at most, of two families (the API server's validation of clusterIPs).
    let requested: Vec<IpFamily> = cluster_ips
        .iter()
        .take_while(|ip| **ip != "None")
        .filter_map(|ip| ip.parse().ok().map(IpFamily::of))
        .collect();
    let shown = || {
        let quoted: Vec<String> = cluster_ips.iter().map(|c| format!("{c:?}")).collect();
        format!("[]string{{{}}}", quoted.join(", "))
    };
    if requested.len() > 2 {
        refused.push((
            "spec.clusterIPs".to_string(),
            format!("Invalid value: {}: may only hold up to 2 values", shown()),
        ));
        return Err(refused);
    }
    if requested.len() == 2 && requested[0] == requested[1] {
        refused.push((
            "spec.clusterIPs".to_string(),
            format!(
                "Invalid value: {}: may specify no more than one IP for each IP family",
                shown()
            ),
        ));
        return Err(refused);
    }
    // The families of requested addresses, where ipFamilies does not say them.
    for (i, ip) in cluster_ips.iter().enumerate() {
        if *ip == "None" {
            break;
        }
        let Ok(ip) = ip.parse() else { continue };
        let family = IpFamily::of(ip);
        if i >= families.len() {
            if cluster.contains(&family) {
                families.push(family);
            } else {
                let shown: Vec<String> = cluster_ips.iter().map(|c| format!("{c:?}")).collect();
                refused.push((
                    format!("spec.clusterIPs[{i}]"),
                    format!(
                        "Invalid value: []string{{{}}}: {} is not configured on this cluster",
                        shown.join(", "),
                        family.as_str()
                    ),
                ));
            }
        }
    }
    if !refused.is_empty() {
        return Err(refused);
    }
    let primary = cluster.first().copied().unwrap_or(IpFamily::Ipv4);
    if headless && selectorless {
        // The one case where a single-stack cluster gives two families.
        if families.is_empty() {
            families.push(primary);
        }
        if families.len() < 2 && policy != IpFamilyPolicy::SingleStack {
            families.push(families[0].other());
        }
        return Ok(Some(Families { policy, families }));
    }
    if policy == IpFamilyPolicy::RequireDualStack && cluster.len() < 2 {
        refused.push(invalid_policy(
            "this cluster is not configured for dual-stack services",
        ));
    }
    for (i, f) in families.iter().enumerate() {
        if !cluster.contains(f) {
            refused.push((
                format!("spec.ipFamilies[{i}]"),
                format!(
                    "Invalid value: {:?}: not configured on this cluster",
                    f.as_str()
                ),
            ));
        }
    }
    if !refused.is_empty() {
        return Err(refused);
    }
    if families.is_empty() {
        families.push(primary);
    }
    if policy != IpFamilyPolicy::SingleStack && families.len() == 1 && cluster.len() == 2 {
        families.push(families[0].other());
    }
    Ok(Some(Families { policy, families }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use IpFamily::{Ipv4, Ipv6};
    use IpFamilyPolicy::*;

    fn spec(json: serde_json::Value) -> ServiceSpec {
        serde_json::from_value(json).unwrap()
    }

    fn ok(json: serde_json::Value, cluster: &[IpFamily]) -> (IpFamilyPolicy, Vec<IpFamily>) {
        let f = families(&spec(json), cluster).unwrap().unwrap();
        (f.policy, f.families)
    }

    fn refused(json: serde_json::Value, cluster: &[IpFamily]) -> Vec<Refusal> {
        families(&spec(json), cluster).unwrap_err()
    }

    const SEL: &str = "app";

    #[test]
    fn defaults_on_single_and_dual_stack_clusters() {
        let v4 = [Ipv4];
        let dual = [Ipv4, Ipv6];
        let sel = serde_json::json!({"selector": {SEL: "x"}});
        assert_eq!(ok(sel.clone(), &v4), (SingleStack, vec![Ipv4]));
        assert_eq!(ok(sel.clone(), &dual), (SingleStack, vec![Ipv4]));
        assert_eq!(ok(sel, &[Ipv6, Ipv4]), (SingleStack, vec![Ipv6]));
        let prefer =
            serde_json::json!({"selector": {SEL: "x"}, "ipFamilyPolicy": "PreferDualStack"});
        assert_eq!(ok(prefer.clone(), &v4), (PreferDualStack, vec![Ipv4]));
        assert_eq!(ok(prefer, &dual), (PreferDualStack, vec![Ipv4, Ipv6]));
        let require_v6 = serde_json::json!({"selector": {SEL: "x"}, "ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv6"]});
        assert_eq!(ok(require_v6, &dual), (RequireDualStack, vec![Ipv6, Ipv4]));
        // The family of a requested address.
        let v6_ip = serde_json::json!({"selector": {SEL: "x"}, "clusterIP": "fd00:10:96::77"});
        assert_eq!(ok(v6_ip, &dual), (SingleStack, vec![Ipv6]));
        let external = spec(serde_json::json!({"type": "ExternalName"}));
        assert_eq!(families(&external, &v4), Ok(None), "ExternalName has none");
    }

    #[test]
    fn headless_services() {
        let v4 = [Ipv4];
        // Selectorless: RequireDualStack by default, both families even on a single-stack
        // cluster.
        let bare = serde_json::json!({"clusterIP": "None"});
        assert_eq!(ok(bare, &v4), (RequireDualStack, vec![Ipv4, Ipv6]));
        // With a selector: as any Service.
        let sel = serde_json::json!({"clusterIP": "None", "selector": {SEL: "x"}});
        assert_eq!(ok(sel, &v4), (SingleStack, vec![Ipv4]));
        let sel_require = serde_json::json!({"clusterIP": "None", "selector": {SEL: "x"}, "ipFamilyPolicy": "RequireDualStack"});
        assert_eq!(
            refused(sel_require, &v4),
            vec![(
                "spec.ipFamilyPolicy".to_string(),
                "Invalid value: \"RequireDualStack\": this cluster is not configured for dual-stack services".to_string()
            )]
        );
    }

    #[test]
    fn cluster_ips_are_at_most_two_of_two_families() {
        let dual = [IpFamily::Ipv4, IpFamily::Ipv6];
        let same = serde_json::json!({"ipFamilyPolicy": "RequireDualStack", "selector": {SEL: "x"}, "clusterIPs": ["10.96.0.50", "10.96.0.51"]});
        let r = refused(same, &dual);
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0].0, "spec.clusterIPs");
        assert!(
            r[0].1
                .ends_with("may specify no more than one IP for each IP family"),
            "{r:?}"
        );
        let three = serde_json::json!({"ipFamilyPolicy": "RequireDualStack", "selector": {SEL: "x"}, "clusterIPs": ["10.96.0.50", "fd00:10:96::5", "10.96.0.52"]});
        assert!(refused(three, &dual)[0]
            .1
            .ends_with("may only hold up to 2 values"));
    }

    #[test]
    fn refusals_at_their_fields_in_the_api_servers_words() {
        let v4 = [Ipv4];
        assert_eq!(
            refused(
                serde_json::json!({"selector": {SEL: "x"}, "ipFamilies": ["IPv6"]}),
                &v4
            ),
            vec![(
                "spec.ipFamilies[0]".to_string(),
                "Invalid value: \"IPv6\": not configured on this cluster".to_string()
            )]
        );
        assert_eq!(
            refused(
                serde_json::json!({"selector": {SEL: "x"}, "ipFamilies": ["IPv4", "IPv6"]}),
                &v4
            ),
            vec![(
                "spec.ipFamilyPolicy".to_string(),
                "Invalid value: \"SingleStack\": must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified".to_string()
            )]
        );
        assert_eq!(
            refused(
                serde_json::json!({"selector": {SEL: "x"}, "clusterIPs": ["10.96.0.5", "fd00::5"], "ipFamilyPolicy": "PreferDualStack"}),
                &v4
            ),
            vec![(
                "spec.clusterIPs[1]".to_string(),
                "Invalid value: []string{\"10.96.0.5\", \"fd00::5\"}: IPv6 is not configured on this cluster".to_string()
            )]
        );
        assert_eq!(
            refused(
                serde_json::json!({"selector": {SEL: "x"}, "ipFamilyPolicy": "RequireDualStack"}),
                &v4
            )[0]
            .0,
            "spec.ipFamilyPolicy"
        );
    }
}
