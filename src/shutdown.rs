//! The shutdown signal every long-running task honours.
//!
//! The first SIGINT/SIGTERM flips a [`tokio::sync::watch`] flag: tasks finish what
//! they hold (flush, insert, commit) and return. A second signal exits the process
//! at once with code 130.

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// A cloneable receiver of the shutdown signal.
#[derive(Clone, Debug)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// Triggers a [`Shutdown`] by hand (tests, bounded runs).
#[derive(Debug)]
pub struct Trigger {
    tx: watch::Sender<bool>,
}

impl Trigger {
    /// Signals every receiver.
    pub fn fire(&self) {
        let _ = self.tx.send(true);
    }
}

impl Shutdown {
    /// A signal that only fires through the returned [`Trigger`].
    pub fn manual() -> (Trigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (Trigger { tx }, Shutdown { rx })
    }

    /// A signal fired by SIGINT or SIGTERM; a second one exits with 130.
    /// Must be called inside a tokio runtime.
    pub fn from_signals() -> anyhow::Result<Shutdown> {
        let (trigger, shutdown) = Shutdown::manual();
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        tokio::spawn(async move {
            tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
            tracing::info!(
                "shutting down: finishing in-flight work (press Ctrl-C again to exit at once)"
            );
            trigger.fire();
            tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
            eprintln!("second signal: exiting now");
            std::process::exit(i32::from(crate::exit::INTERRUPTED));
        });
        Ok(shutdown)
    }

    /// True once the signal fired.
    pub fn is_fired(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves when the signal fires.
    pub async fn wait(&mut self) {
        while !*self.rx.borrow_and_update() {
            if self.rx.changed().await.is_err() {
                // The trigger is gone: nobody can fire any more; wait forever.
                std::future::pending::<()>().await;
            }
        }
    }
}
