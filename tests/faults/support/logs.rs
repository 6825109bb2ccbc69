//! Captures every log line of the test process, so the secrets check can read them all.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut buffer) = self.0.lock() {
            buffer.extend_from_slice(bytes);
        }
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = std::io::stderr().write_all(bytes);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'a self) -> Buffer {
        self.clone()
    }
}

fn buffer() -> &'static Buffer {
    static BUFFER: OnceLock<Buffer> = OnceLock::new();
    BUFFER.get_or_init(|| {
        let buffer = Buffer::default();
        let filter = "debug,h2=info,hyper=info,hyper_util=info,tower=info,tonic=info";
        let _ =
            tracing_subscriber::fmt().with_env_filter(filter).with_writer(buffer.clone()).with_ansi(false).try_init();
        buffer
    })
}

/// Starts capturing (idempotent).
pub fn capture() {
    buffer();
}

/// Everything logged so far.
pub fn text() -> String {
    buffer().0.lock().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}
