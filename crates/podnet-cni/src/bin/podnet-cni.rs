//! The `podnet-cni` executable, as container runtimes invoke it.

fn main() -> std::process::ExitCode {
    podnet_cni::plugin::main()
}
