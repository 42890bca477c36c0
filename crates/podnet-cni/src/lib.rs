//! podnet's CNI plugin, spec 1.1.0 (also 0.3.x, 0.4.0, 1.0.0): a routed veth datapath with
//! built-in IPAM (`ipam.type: podnet-ipam`). See [`datapath`] for the wiring and [`ipam`] for
//! the address store.

pub mod agent;
pub mod datapath;
pub mod ipam;
pub mod netns;
pub mod plugin;
pub mod spec;
