//! `podnet ingress watch`: flags of the Ingress controller ([`podnet_ingress_controller`]).

use std::process::ExitCode;

use anyhow::Result;

use crate::IngressCommand;

/// `NAMESPACE/NAME`.
pub(crate) fn ns_name(flag: &str, s: &str) -> Result<podnet_model::NsName> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() => {
            Ok(podnet_model::NsName::new(ns, name))
        }
        _ => anyhow::bail!("{flag} {s:?}: NAMESPACE/NAME"),
    }
}

/// What every edge proxy following the API is asked, from its flags.
pub(crate) fn proxy(
    api: crate::ApiArgs,
    admin: std::net::SocketAddr,
    served: Option<std::path::PathBuf>,
    no_access_log: bool,
    threads: usize,
) -> Result<podnet_ingress_controller::Proxy> {
    Ok(podnet_ingress_controller::Proxy {
        settings: crate::agent::settings(api.config.as_deref(), &api.cluster)?,
        kubeconfig: api.kubeconfig,
        admin,
        served,
        access_log: !no_access_log,
        threads,
    })
}

pub fn run(cmd: IngressCommand) -> Result<ExitCode> {
    let IngressCommand::Watch {
        api,
        http,
        https,
        admin,
        served,
        publish_service,
        no_access_log,
        threads,
    } = cmd;
    let proxy = proxy(api, admin, served, no_access_log, threads)?;
    podnet_ingress_controller::run(podnet_ingress_controller::Config {
        proxy,
        http,
        https,
        publish: publish_service
            .map(|s| ns_name("--publish-service", &s))
            .transpose()?,
    })?;
    Ok(ExitCode::SUCCESS)
}
