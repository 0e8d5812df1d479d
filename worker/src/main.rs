//! `jetsweep-worker`: parses the command line and hands it to the library.

use clap::Parser;

/// Training allocates and frees many small tensors per step; mimalloc makes that cheaper than glibc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // Data goes to stdout: when its reader goes away (`| head`), stop quietly like other Unix tools
    // instead of panicking on a broken pipe.
    // SAFETY: called first, before any thread exists; restores the default disposition of one signal.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // Everything this process writes (dataset cache, checkpoints and logs) is its user's alone: on a shared
    // login node other users must not read it (the state file holds worker secrets).
    // SAFETY: sets this process's file-creation mask; no other thread exists yet.
    unsafe {
        libc::umask(0o077);
    }
    let cli = jetsweep_worker::cli::Cli::parse();
    match jetsweep_worker::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
