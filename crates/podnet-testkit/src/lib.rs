//! What podnet's tests share, in one place instead of files included by path: the upstream
//! NetworkPolicy e2e cases and their model ([`netpol_cases`]: the model's tests, the policy
//! compiler's, and the lab's run them), and random NetworkPolicies with their manifests
//! ([`policy_gen`]: the policy compiler's property tests and the packet tests of each node's
//! table), and a real headless browser for the tests of pages ([`browser`]).

pub mod browser;
pub mod cnp_cases;
pub mod netpol_cases;
pub mod policy_gen;
