//! `vmpool-supervisor RUN_DIR`: the per-VM supervisor that `start` runs (QEMU's parent). Its
//! logic is `vmpool::vm::supervisor`; this is only its entry point.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    std::process::exit(vmpool::vm::supervisor::main(&args));
}
