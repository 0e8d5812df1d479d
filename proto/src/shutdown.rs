//! The stop signal every long-running jetsweep process obeys: SIGTERM (what Kubernetes, Slurm and
//! systemd send) or Ctrl-C.

/// Completes on the first SIGTERM or Ctrl-C (SIGINT).
pub async fn signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            // No handler can be installed: only Ctrl-C stops us then.
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = terminate => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
