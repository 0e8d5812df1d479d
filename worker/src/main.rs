//! `jetsweep-worker`: parses the command line and hands it to the library.

use clap::Parser;

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
