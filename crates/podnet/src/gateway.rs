//! `podnet gateway watch` and `podnet gateway provision`: flags of the Gateway controller
//! ([`podnet_gateway_controller`]).

use std::process::ExitCode;

use anyhow::Result;

use crate::{GatewayCommand, GatewayWatch};

pub fn run(cmd: GatewayCommand) -> Result<ExitCode> {
    match cmd {
        GatewayCommand::Watch(w) => watch(w)?,
        GatewayCommand::Provision { api, image } => podnet_gateway_controller::provision::run(
            api.kubeconfig.as_deref(),
            &crate::agent::settings(api.config.as_deref(), &api.cluster)?,
            &image,
        )?,
    }
    Ok(ExitCode::SUCCESS)
}

fn watch(w: GatewayWatch) -> Result<()> {
    let GatewayWatch {
        api,
        gateway,
        address,
        admin,
        served,
        write_status,
        no_access_log,
        threads,
    } = w;
    podnet_gateway_controller::run(podnet_gateway_controller::Config {
        proxy: crate::ingress::proxy(api, admin, served, no_access_log, threads)?,
        gateway: crate::ingress::ns_name("--gateway", &gateway)?,
        address,
        write_status,
    })?;
    Ok(())
}
