//! Request ids and the access log (a JSON line per request).

use super::*;

/// Request IDs: 32 hex digits, from a counter hashed with this process's random keys.
pub(super) struct RequestIds {
    pub(super) counter: AtomicU64,
    pub(super) keys: (RandomState, RandomState),
}

impl RequestIds {
    pub(super) fn new() -> RequestIds {
        RequestIds {
            counter: AtomicU64::new(0),
            keys: (RandomState::new(), RandomState::new()),
        }
    }

    pub(super) fn next(&self) -> HeaderValue {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut out = [0u8; 32];
        for (i, word) in [self.keys.0.hash_one(n), self.keys.1.hash_one(n)]
            .into_iter()
            .enumerate()
        {
            for j in 0..16 {
                out[i * 16 + j] = HEX[((word >> (60 - 4 * j)) & 0xf) as usize];
            }
        }
        HeaderValue::from_bytes(&out).expect("hex digits")
    }
}

/// JSON lines on stdout, buffered: written when 64 KiB gather or every 200 ms.
pub(super) struct AccessLog {
    pub(super) on: bool,
    pub(super) buf: Arc<Mutex<Vec<u8>>>,
}

impl AccessLog {
    pub(super) fn new(on: bool) -> AccessLog {
        let buf = Arc::new(Mutex::new(Vec::new()));
        if on {
            let weak = Arc::downgrade(&buf);
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        let Some(buf) = weak.upgrade() else { return };
                        flush(&buf);
                    }
                });
            }
        }
        AccessLog { on, buf }
    }

    pub(super) fn write(&self, line: &str) {
        let full = {
            let mut b = self.buf.lock().unwrap_or_else(|e| e.into_inner());
            b.extend_from_slice(line.as_bytes());
            b.push(b'\n');
            b.len() >= 64 * 1024
        };
        if full {
            flush(&self.buf);
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        flush(&self.buf);
    }
}

pub(super) fn flush(buf: &Mutex<Vec<u8>>) {
    let out = std::mem::take(&mut *buf.lock().unwrap_or_else(|e| e.into_inner()));
    if !out.is_empty() {
        let _ = std::io::stdout().lock().write_all(&out);
    }
}
