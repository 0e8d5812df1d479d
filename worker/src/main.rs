//! `jetsweep-worker`: parses the command line and hands it to the library.

use clap::Parser;

/// Training allocates and frees many small tensors per step; mimalloc makes that cheaper than glibc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = jetsweep_worker::cli::Cli::parse();
    match jetsweep_worker::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
