//! Verifying a node: what the kernel holds, read back ([`crate::observe`], through
//! [`Effects::observe`]), compared with what the node must hold; any difference (drift: an
//! element deleted behind the agent's back, a flushed chain, a route removed, a table gone)
//! is named and repaired with the applier's smallest transaction from what the kernel really
//! holds, never from the agent's record of it. kube-proxy's periodic full syncs and Cilium's
//! controllers do the same for the same reason: a record is a cache.

use std::fmt;

use crate::apply::{apply, Held};
use crate::dataplane::NodeDataplane;
use crate::effects::Effects;
use crate::NodeError;

/// Where a node differs from what it must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    /// Which part: `proxy`, `policy`, `masquerade`, `overlay`, `routes` or `sysctl`.
    pub table: &'static str,
    pub what: String,
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.table, self.what)
    }
}

/// What the kernel holds, in the applier's terms, and what could not be read as podnet's
/// (a table whose chains lack rules, elements that are not ours): those parts are `None` in
/// `held`, so that an apply replaces them whole.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub held: Held,
    pub notes: Vec<Drift>,
}

/// The outcome of a verify pass.
#[derive(Debug)]
pub struct Verified {
    /// Every difference found (empty: the kernel held exactly what it must).
    pub drift: Vec<Drift>,
    /// What the node holds afterwards.
    pub held: Held,
    /// Failures of the repair; the node still differs where they are.
    pub failures: Vec<NodeError>,
}

/// At most this many examples per difference in a message.
const EXAMPLES: usize = 3;

fn examples<T: fmt::Debug>(what: &str, items: &[T]) -> String {
    let shown: Vec<String> = items
        .iter()
        .take(EXAMPLES)
        .map(|i| format!("{i:?}"))
        .collect();
    let more = items.len().saturating_sub(EXAMPLES);
    format!(
        "{} {what}: {}{}",
        items.len(),
        shown.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    )
}

/// Missing and unexpected entries of one map or set, as drift.
fn compare<T: fmt::Debug + Ord + Clone>(
    out: &mut Vec<Drift>,
    table: &'static str,
    set: &str,
    kernel: impl IntoIterator<Item = T>,
    want: impl IntoIterator<Item = T>,
) {
    let kernel: std::collections::BTreeSet<T> = kernel.into_iter().collect();
    let want: std::collections::BTreeSet<T> = want.into_iter().collect();
    let missing: Vec<T> = want.difference(&kernel).cloned().collect();
    let extra: Vec<T> = kernel.difference(&want).cloned().collect();
    if !missing.is_empty() {
        out.push(Drift {
            table,
            what: examples(&format!("missing from {set}"), &missing),
        });
    }
    if !extra.is_empty() {
        out.push(Drift {
            table,
            what: examples(&format!("unexpected in {set}"), &extra),
        });
    }
}

/// Every way `observed` differs from `want`.
pub fn drift(observed: &Observed, want: &NodeDataplane) -> Vec<Drift> {
    let mut out = observed.notes.clone();
    let held = &observed.held;
    for (k, v) in &want.sysctls {
        if held.sysctls.get(k) != Some(v) {
            out.push(Drift {
                table: "sysctl",
                what: format!(
                    "{k} is {}, want {v}",
                    held.sysctls.get(k).map_or("unreadable", String::as_str)
                ),
            });
        }
    }
    if held.vxlan.as_ref() != Some(&want.vxlan) {
        out.push(Drift {
            table: "overlay",
            what: format!(
                "device {} missing or not as made (VNI {}, port {}, MTU {}, MAC {}, {}/32, up)",
                want.vxlan.name,
                want.vxlan.vni,
                want.vxlan.port,
                want.vxlan.mtu,
                want.vxlan.vtep.mac,
                want.vxlan.vtep.ip
            ),
        });
    } else {
        let show = |r: &crate::dataplane::RemoteNode| format!("{} ({})", r.name, r.path());
        compare(
            &mut out,
            "routes",
            "the routes to other nodes' pods (and the overlay's neighbour and FDB entries)",
            held.remotes.iter().map(show),
            want.remotes.iter().map(show),
        );
    }
    let noted = |table: &str| observed.notes.iter().any(|n| n.table == table);
    if want.masquerade.is_some() && held.masquerade != want.masquerade && !noted("masquerade") {
        out.push(Drift {
            table: "masquerade",
            what: "table missing or its rules differ".into(),
        });
    }
    let missing = |out: &mut Vec<Drift>, table: &'static str, name: &str| {
        if !noted(table) {
            out.push(Drift {
                table,
                what: format!("table ip {name} missing"),
            });
        }
    };
    match &held.policy {
        None => missing(&mut out, "policy", podnet_policy::TABLE),
        // Equal as a whole (the common case, and cheap): nothing to take apart.
        Some(k) if k == &want.policy => {}
        Some(k) => {
            let w = &want.policy;
            compare(
                &mut out,
                "policy",
                "local",
                k.local.clone(),
                w.local.clone(),
            );
            compare(
                &mut out,
                "policy",
                "ingress",
                k.ingress.clone(),
                w.ingress.clone(),
            );
            compare(
                &mut out,
                "policy",
                "egress",
                k.egress.clone(),
                w.egress.clone(),
            );
            let rects = |p: &podnet_policy::PolicyPlan| -> Vec<_> {
                p.groups
                    .iter()
                    .flat_map(|(g, rs)| rs.iter().map(move |r| (g.chain(), *r)))
                    .collect()
            };
            compare(&mut out, "policy", "the groups' sets", rects(k), rects(w));
            let tiers = |p: &podnet_policy::PolicyPlan| -> Vec<_> {
                p.tiers
                    .iter()
                    .flat_map(|(g, m)| m.iter().map(move |(r, a)| (g.sets(*a).0, *r)))
                    .collect()
            };
            compare(&mut out, "policy", "the tiers' sets", tiers(k), tiers(w));
            compare(
                &mut out,
                "policy",
                "the groups' tiers",
                k.layouts.iter().map(|(g, l)| (g.chain(), format!("{l:?}"))),
                w.layouts.iter().map(|(g, l)| (g.chain(), format!("{l:?}"))),
            );
            compare(
                &mut out,
                "policy",
                "the groups",
                k.groups.keys().map(|g| g.chain()),
                w.groups.keys().map(|g| g.chain()),
            );
            if k.sample != w.sample {
                out.push(Drift {
                    table: "policy",
                    what: format!(
                        "the flow log's sample: {} per 10,000, want {}",
                        k.sample, w.sample
                    ),
                });
            }
        }
    }
    if held.proxy.is_none() {
        missing(&mut out, "proxy", podnet_proxy::nft::TABLE);
    }
    if let Some(k) = held.proxy.as_ref().filter(|k| *k != &want.proxy) {
        let sets = |e: &podnet_proxy::nft::Elements| -> Vec<(String, podnet_proxy::nft::Element)> {
            e.iter().map(|x| (x.set_name(), x)).collect()
        };
        compare(
            &mut out,
            "proxy",
            "its maps and sets",
            sets(k),
            sets(&want.proxy),
        );
    }
    out
}

/// Reads what the node holds, names every difference from `want` and repairs it from what the
/// kernel holds. `held` (the caller's record) gives only what the kernel cannot show: the
/// conntrack deletions still owed.
pub fn verify(
    held: &Held,
    want: &NodeDataplane,
    fx: &mut dyn Effects,
) -> Result<Verified, NodeError> {
    verify_with(held, want, fx, None)
}

/// [`verify`], with what the kernel holds already read when `read` is given (on another
/// thread, by [`crate::effects::KernelReader`]: the caller makes sure nothing was written to
/// the kernel since the read began).
pub fn verify_with(
    held: &Held,
    want: &NodeDataplane,
    fx: &mut dyn Effects,
    read: Option<crate::effects::Read>,
) -> Result<Verified, NodeError> {
    let mut observed = match read {
        Some(r) => fx.observe_with(want, r)?,
        None => fx.observe(want)?,
    };
    observed.held.stale_flows = held.stale_flows.clone();
    let drift = drift(&observed, want);
    if drift.is_empty() {
        return Ok(Verified {
            drift,
            held: observed.held,
            failures: Vec::new(),
        });
    }
    let applied = apply(&observed.held, want, fx);
    Ok(Verified {
        drift,
        held: applied.held,
        failures: applied.failures,
    })
}
