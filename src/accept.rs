//! Accepting TCP connections without spinning: when the process runs out of file descriptors
//! (EMFILE, ENFILE) or memory, `accept` fails at once, again and again, until a descriptor is
//! freed; each listener waits a little before trying again instead of burning a core.

use std::future::Future;
use std::io;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// How long a listener pauses after an error that is not about one connection.
pub(crate) const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The next connection on `listener`; resource errors pause the loop, per-connection errors
/// (a peer that reset before we accepted) do not.
pub(crate) async fn accept(listener: &TcpListener) -> TcpStream {
    accept_with(|| async { listener.accept().await.map(|(stream, _)| stream) }, ACCEPT_BACKOFF).await
}

/// The accept loop, over any source of connections.
pub(crate) async fn accept_with<T, F, Fut>(mut next: F, backoff: Duration) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = io::Result<T>>,
{
    loop {
        match next().await {
            Ok(connection) => return connection,
            Err(e) if about_one_connection(&e) => {
                tracing::debug!(error = %e, "a connection failed before it was accepted")
            }
            Err(e) => {
                tracing::warn!(error = %e, pause = ?backoff, "accepting connections failed; pausing");
                tokio::time::sleep(backoff).await;
            }
        }
    }
}

/// Every connection on `listener`, with `TCP_NODELAY` set, as a stream a server can serve.
pub(crate) fn incoming(listener: TcpListener) -> impl futures_util::Stream<Item = io::Result<TcpStream>> {
    futures_util::stream::unfold(listener, |listener| async move {
        let stream = accept(&listener).await;
        let _ = stream.set_nodelay(true);
        Some((Ok(stream), listener))
    })
}

fn about_one_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionRefused
    )
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use tokio::time::Instant;

    /// Plays back accept results and records when each was asked for.
    async fn play(results: Vec<io::Result<u32>>) -> (u32, Vec<Duration>) {
        let started = Instant::now();
        let results = RefCell::new(results.into_iter());
        let asked = RefCell::new(Vec::new());
        let connection = accept_with(
            || {
                asked.borrow_mut().push(started.elapsed());
                let next = results.borrow_mut().next().expect("a scripted result");
                async move { next }
            },
            ACCEPT_BACKOFF,
        )
        .await;
        (connection, asked.into_inner())
    }

    fn os_error(code: i32) -> io::Result<u32> {
        Err(io::Error::from_raw_os_error(code))
    }

    #[tokio::test(start_paused = true)]
    async fn out_of_file_descriptors_pauses_before_the_next_accept() {
        const EMFILE: i32 = 24;
        const ENFILE: i32 = 23;
        let (connection, asked) = play(vec![os_error(EMFILE), os_error(ENFILE), Ok(7)]).await;
        assert_eq!(connection, 7);
        assert_eq!(asked, [Duration::ZERO, ACCEPT_BACKOFF, ACCEPT_BACKOFF * 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_reset_before_accept_does_not_pause() {
        let reset = Err(io::Error::from(io::ErrorKind::ConnectionAborted));
        let (connection, asked) = play(vec![reset, Ok(3)]).await;
        assert_eq!((connection, asked), (3, vec![Duration::ZERO, Duration::ZERO]));
    }
}
