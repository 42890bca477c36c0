//! The `podnet-cni` executable, as container runtimes invoke it: CNI_* variables, the network
//! configuration on stdin, the result (or the Error structure) on stdout, logs on stderr.

use std::io::{Read, Write};
use std::process::ExitCode;

use podnet_cni::datapath::Netlink;
use podnet_cni::plugin::run;
use podnet_cni::spec::{code, CniError, Env};

fn main() -> ExitCode {
    let env = Env::from_lookup(|k| std::env::var(k).ok());
    let mut stdin = Vec::new();
    let result = match std::io::stdin().read_to_end(&mut stdin) {
        Ok(_) => run(&env, &stdin, &Netlink),
        Err(e) => Err(CniError::new(
            code::IO_FAILURE,
            format!("reading stdin: {e}"),
        )),
    };
    let mut out = std::io::stdout().lock();
    match result {
        Ok(Some(v)) => {
            let _ = writeln!(out, "{v}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("podnet-cni: {:?}: {e}", env.command);
            let _ = writeln!(out, "{}", serde_json::to_string(&e).unwrap_or_default());
            ExitCode::FAILURE
        }
    }
}
