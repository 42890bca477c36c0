//! Services as the API server allocates them (ClusterIPs, NodePorts, requested ones first) and
//! a load-balancer controller gives them addresses; the `kubernetes` Service every cluster has.

use super::*;

impl Builder {
    pub(super) fn services(
        &mut self,
        objects: &[Object],
    ) -> (Vec<ServiceInfo>, Vec<(NsName, EndpointSliceInfo)>) {
        let mut svcs: Vec<&Sourced<Service>> = of_kind!(objects, Service).collect();
        svcs.sort_by(|a, b| {
            (&a.obj.metadata.namespace, &a.obj.metadata.name)
                .cmp(&(&b.obj.metadata.namespace, &b.obj.metadata.name))
        });
        let mut infos: Vec<ServiceInfo> = svcs.iter().map(|s| service_info(s)).collect();
        let has_kubernetes = infos
            .iter()
            .any(|s| s.namespace == "default" && s.name == "kubernetes");
        let mut alloc = Allocator::new(&self.config);
        // The API server's own Service takes the first address.
        let builtin = (!has_kubernetes).then(|| {
            let ip = nth_address(&self.config.service_cidr(), 1).expect("serviceCIDR holds .1");
            alloc
                .claim_ip(ip)
                .expect("the first address of the serviceCIDR is free");
            kubernetes_service(ip)
        });
        // Pass 1: what the manifests ask for. Pass 2: allocate the rest, in a stable order.
        for (svc, src) in infos.iter_mut().zip(&svcs) {
            self.claim_requested(&mut alloc, svc, src);
        }
        let mut short = Shortages::default();
        for (svc, src) in infos.iter_mut().zip(&svcs) {
            self.allocate_rest(&mut alloc, svc, src, &mut short);
        }
        self.report_shortages(short);
        // Pass 3: the load-balancer controller.
        self.assign_load_balancer_ips(&mut infos, &svcs);
        let user = self.user_slices(objects, &infos);
        if let Some(b) = builtin {
            infos.push(b);
            infos.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        }
        (infos, user)
    }

    /// The ClusterIPs, node ports and health-check port a Service asks for, where free.
    pub(super) fn claim_requested(
        &mut self,
        alloc: &mut Allocator,
        svc: &mut ServiceInfo,
        src: &Sourced<Service>,
    ) {
        let spec = src.obj.spec.as_ref().expect("validated");
        let oref = ObjectRef::new("Service", Some(&svc.namespace), &svc.name);
        // An error at one of the Service's fields.
        let invalid = |field: &str, message: String| {
            Diagnostic::error(src.locate(field), message)
                .with_object(oref.clone())
                .with_field(field)
        };
        let ips: Vec<&str> = podnet_model::convert::requested_cluster_ips(spec);
        // The families first, as the API server's allocators decide them; no address is
        // claimed for a Service they refuse.
        match super::families::families(spec, &self.config.families()) {
            Ok(f) => {
                svc.ip_family_policy = f.as_ref().map(|f| f.policy);
                svc.ip_families = f.map(|f| f.families).unwrap_or_default();
            }
            Err(refused) => {
                // Refused: nothing is allocated for it.
                svc.ip_families.clear();
                for (field, message) in refused {
                    self.diags.push(invalid(&field, message));
                }
                return;
            }
        }
        if svc.service_type != ServiceType::ExternalName && !svc.headless {
            for (i, raw) in ips.iter().enumerate() {
                let field = if spec.cluster_ips.as_ref().is_some_and(|l| !l.is_empty()) {
                    format!("spec.clusterIPs[{i}]")
                } else {
                    "spec.clusterIP".to_string()
                };
                let Ok(ip) = raw.parse::<IpAddr>() else {
                    continue;
                };
                if let Err(why) = alloc.claim_ip(ip) {
                    self.diags
                        .push(invalid(&field, format!("Invalid value: {raw:?}: {why}")));
                } else {
                    svc.cluster_ips.push(ip);
                }
            }
        }
        for (i, p) in svc.ports.iter_mut().enumerate() {
            let field = format!("spec.ports[{i}].nodePort");
            if let Some(np) = p.node_port {
                if let Err(why) =
                    alloc.claim_port(np, &svc.namespace, &svc.name, p.protocol.as_str())
                {
                    self.diags
                        .push(invalid(&field, format!("Invalid value: {np}: {why}")));
                    p.node_port = None;
                }
            }
        }
        if let Some(hc) = svc.health_check_node_port {
            if let Err(why) = alloc.claim_port(hc, &svc.namespace, &svc.name, "health") {
                let field = "spec.healthCheckNodePort";
                self.diags
                    .push(invalid(field, format!("Invalid value: {hc}: {why}")));
            }
        }
    }

    /// What a Service did not ask for: a ClusterIP, node ports, a health-check port.
    pub(super) fn allocate_rest(
        &mut self,
        alloc: &mut Allocator,
        svc: &mut ServiceInfo,
        src: &Sourced<Service>,
        short: &mut Shortages,
    ) {
        let spec = src.obj.spec.as_ref().expect("validated");
        let key = svc.key().to_string();
        if svc.service_type != ServiceType::ExternalName && !svc.headless {
            // One address per family, in the order of ipFamilies.
            let families = svc.ip_families.clone();
            for family in &families {
                if svc
                    .cluster_ips
                    .iter()
                    .any(|ip| IpFamily::of(*ip) == *family)
                {
                    continue;
                }
                match alloc.allocate_ip(&key, *family) {
                    Some(ip) => svc.cluster_ips.push(ip),
                    None => short
                        .cluster_ips
                        .entry(*family)
                        .or_default()
                        .push((src.start.clone(), svc.key())),
                }
            }
            svc.cluster_ips
                .sort_by_key(|ip| families.iter().position(|f| *f == IpFamily::of(*ip)));
        }
        let wants_node_ports = svc.service_type == ServiceType::NodePort
            || (svc.service_type == ServiceType::LoadBalancer
                && spec.allocate_load_balancer_node_ports != Some(false));
        if wants_node_ports {
            // Ports with the same number but another protocol share the node port.
            let mut by_port: HashMap<i32, i32> = HashMap::new();
            let svc_key = svc.key();
            for p in svc.ports.iter_mut() {
                if p.node_port.is_none() {
                    let shared = by_port.get(&p.port).copied();
                    p.node_port = shared.or_else(|| {
                        alloc.allocate_port(&format!("{key}/{}/{}", p.name, p.protocol))
                    });
                    if p.node_port.is_none() {
                        short.node_ports.push((src.start.clone(), svc_key.clone()));
                    }
                }
                if let Some(np) = p.node_port {
                    by_port.entry(p.port).or_insert(np);
                }
            }
        }
        if svc.service_type == ServiceType::LoadBalancer
            && svc.external_traffic_policy == TrafficPolicy::Local
            && svc.health_check_node_port.is_none()
        {
            svc.health_check_node_port = alloc.allocate_port(&format!("{key}/healthz"));
        }
    }

    /// One error per exhausted range, naming the first Service that got nothing and counting
    /// the rest, rather than one error per Service.
    pub(super) fn report_shortages(&mut self, short: Shortages) {
        let mut ranges: Vec<_> = short
            .cluster_ips
            .into_iter()
            .map(|(family, list)| {
                let full = match self.config.service_cidr_of(family) {
                    Some(cidr) => format!("serviceCIDR {cidr} is full"),
                    None => format!("the cluster has no {} serviceCIDR", family.as_str()),
                };
                (list, full, "ClusterIP")
            })
            .collect();
        ranges.extend([(
            short.node_ports,
            format!(
                "the node port range {} is full",
                self.config.node_port_range
            ),
            "node port",
        )]);
        for (list, full, what) in ranges {
            let Some((at, first)) = list.first() else {
                continue;
            };
            let more = match list.len() - 1 {
                0 => String::new(),
                n => format!(" and {n} more Service(s)"),
            };
            self.diags.push(
                Diagnostic::error(
                    at.clone(),
                    format!("{full}: no {what} is left for {first}{more}"),
                )
                .with_object(ObjectRef::new(
                    "Service",
                    Some(&first.namespace),
                    &first.name,
                )),
            );
        }
    }

    /// The load-balancer controller: requested addresses first, then the rest from the pool.
    pub(super) fn assign_load_balancer_ips(
        &mut self,
        infos: &mut [ServiceInfo],
        svcs: &[&Sourced<Service>],
    ) {
        let pool: Vec<IpAddr> = self
            .config
            .load_balancer_pool
            .iter()
            .flat_map(|r| r.iter(65536))
            .collect();
        let mut lb_taken: BTreeMap<IpAddr, String> = BTreeMap::new();
        let ours = |s: &Sourced<Service>| {
            s.obj
                .spec
                .as_ref()
                .and_then(|sp| sp.load_balancer_class.as_deref())
                .is_none()
        };
        for (svc, src) in infos.iter_mut().zip(svcs) {
            if svc.service_type != ServiceType::LoadBalancer || !ours(src) {
                continue;
            }
            let key = svc.key().to_string();
            let wanted = requested_lb_ip(src);
            if let Some(raw) = wanted {
                let ip: IpAddr = raw.parse().expect("validated");
                if !pool.contains(&ip) {
                    self.diags.push(Diagnostic::warning(Some(src.locate("spec.loadBalancerIP")), format!("{raw} is not in the LoadBalancer pool {}; the Service stays <pending>", pool_string(&self.config))).with_object(ObjectRef::new("Service", Some(&svc.namespace), &svc.name)));
                } else if let Some(owner) = lb_taken.get(&ip) {
                    self.diags.push(
                        Diagnostic::warning(
                            Some(src.locate("spec.loadBalancerIP")),
                            format!(
                                "{raw} is already assigned to {owner}; the Service stays <pending>"
                            ),
                        )
                        .with_object(ObjectRef::new(
                            "Service",
                            Some(&svc.namespace),
                            &svc.name,
                        )),
                    );
                } else {
                    lb_taken.insert(ip, key.clone());
                    svc.load_balancer_ips.push(ip);
                }
            }
        }
        for (svc, src) in infos.iter_mut().zip(svcs) {
            if svc.service_type != ServiceType::LoadBalancer
                || !ours(src)
                || !svc.load_balancer_ips.is_empty()
            {
                continue;
            }
            let wanted = requested_lb_ip(src);
            if wanted.is_some() || pool.is_empty() {
                continue;
            }
            let key = svc.key().to_string();
            // One address per family of the Service, from that family's part of the pool
            // (as MetalLB gives dual-stack Services).
            let mut missing = false;
            for family in svc.ip_families.clone() {
                let of_family: Vec<IpAddr> = pool
                    .iter()
                    .copied()
                    .filter(|ip| IpFamily::of(*ip) == family)
                    .collect();
                if of_family.is_empty() {
                    continue;
                }
                let start = (fnv64(&[key.as_bytes()]) % of_family.len() as u64) as usize;
                let found = (0..of_family.len())
                    .map(|i| of_family[(start + i) % of_family.len()])
                    .find(|ip| !lb_taken.contains_key(ip));
                match found {
                    Some(ip) => {
                        lb_taken.insert(ip, key.clone());
                        svc.load_balancer_ips.push(ip);
                    }
                    None => missing = true,
                }
            }
            match missing {
                false => {}
                true => self.diags.push(
                    Diagnostic::warning(
                        Some(src.start.clone()),
                        format!(
                            "the LoadBalancer pool {} is exhausted; the Service stays <pending>",
                            pool_string(&self.config)
                        ),
                    )
                    .with_object(ObjectRef::new(
                        "Service",
                        Some(&svc.namespace),
                        &svc.name,
                    )),
                ),
            }
        }
    }
}

/// The API server's own Service, `default/kubernetes`, when the manifests do not define it.
pub(super) fn kubernetes_service(ip: IpAddr) -> ServiceInfo {
    ServiceInfo {
        namespace: "default".into(),
        name: "kubernetes".into(),
        service_type: ServiceType::ClusterIP,
        labels: [
            ("component".to_string(), "apiserver".to_string()),
            ("provider".to_string(), "kubernetes".to_string()),
        ]
        .into(),
        cluster_ips: vec![ip],
        ip_family_policy: Some(IpFamilyPolicy::SingleStack),
        ip_families: vec![IpFamily::of(ip)],
        ports: vec![ServicePortInfo {
            name: "https".into(),
            protocol: Protocol::Tcp,
            port: 443,
            target_port: TargetPort::Number(6443),
            node_port: None,
            app_protocol: None,
        }],
        builtin: true,
        ..ServiceInfo::default()
    }
}

pub(super) fn pool_string(c: &ClusterConfig) -> String {
    c.load_balancer_pool
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The load-balancer address a Service asks for (`spec.loadBalancerIP`), if any.
fn requested_lb_ip(src: &Sourced<Service>) -> Option<&str> {
    src.obj
        .spec
        .as_ref()
        .and_then(|s| s.load_balancer_ip.as_deref())
        .filter(|s| !s.is_empty())
}
