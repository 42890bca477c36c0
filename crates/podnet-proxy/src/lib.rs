//! podnet's service proxy: Services and their endpoints, from the model, compiled per node into
//! nftables maps (see `docs/design/service-proxy.md`), applied as one transaction each time.

pub mod nft;
pub mod plan;
pub mod synthetic;

pub use plan::{Dispatch, Frontend, Owner, ProxyPlan};
