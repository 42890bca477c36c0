//! The plan `podnet check -o json|yaml` prints: a documented, stable schema
//! (`apiVersion: podnet.dev/v1alpha1`, `kind: ClusterPlan`; see `docs/check-schema.md`).
//!
//! Fields are only ever added within v1alpha1, never renamed or removed.

use serde::Serialize;

use crate::config::ClusterConfig;
use crate::diag::Diagnostic;
use crate::model::{Cluster, NamespaceInfo, NodeInfo, PodInfo, ServiceInfo};

pub const PLAN_API_VERSION: &str = "podnet.dev/v1alpha1";

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPlan<'a> {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub cluster: &'a ClusterConfig,
    pub namespaces: Vec<&'a NamespaceInfo>,
    pub nodes: &'a [NodeInfo],
    pub pods: &'a [PodInfo],
    pub services: Vec<ServicePlan<'a>>,
    pub warnings: &'a [Diagnostic],
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePlan<'a> {
    #[serde(flatten)]
    pub service: &'a ServiceInfo,
    pub status: ServiceStatusPlan,
}

/// `status.loadBalancer.ingress`, as the load-balancer controller writes it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatusPlan {
    pub load_balancer: LoadBalancerPlan,
}

#[derive(Debug, Serialize)]
pub struct LoadBalancerPlan {
    pub ingress: Vec<LbIngress>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LbIngress {
    pub ip: String,
    pub ip_mode: &'static str,
}

impl Cluster {
    /// The plan of this cluster, for printing.
    pub fn plan(&self) -> ClusterPlan<'_> {
        ClusterPlan {
            api_version: PLAN_API_VERSION,
            kind: "ClusterPlan",
            cluster: &self.config,
            namespaces: self.namespaces.values().collect(),
            nodes: &self.nodes,
            pods: &self.pods,
            services: self
                .services
                .iter()
                .map(|s| ServicePlan {
                    service: s,
                    status: ServiceStatusPlan {
                        load_balancer: LoadBalancerPlan {
                            ingress: s
                                .load_balancer_ips
                                .iter()
                                .map(|ip| LbIngress {
                                    ip: ip.to_string(),
                                    ip_mode: "VIP",
                                })
                                .collect(),
                        },
                    },
                })
                .collect(),
            warnings: &self.warnings,
        }
    }
}
