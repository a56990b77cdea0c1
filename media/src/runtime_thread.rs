//! The threads the media engine runs on: each with its own single-threaded tokio runtime,
//! so a shard's loop never shares a scheduler with HTTP, captions or another shard.

use std::future::Future;
use std::io;

use tracing::error;

/// Starts a thread called `name` that runs the future `task` makes, on a runtime of its own.
/// The future is made on the new thread, so it need not be `Send`.
pub(crate) fn spawn<F, Fut>(name: String, task: F) -> io::Result<()>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(task()),
                Err(e) => error!(thread = %name, error = %e, "runtime failed to start"),
            }
        })
        .map(|_| ())
}
