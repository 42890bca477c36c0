//! One watch's stream: the initial list or the version it resumes from, then every change
//! the filter passes, bookmarks, and its end (its timeout, an end on purpose, the client gone).

use super::*;

/// One watch's stream, from its start (the initial list, or the version it resumes from) to
/// its end (its timeout, an end on purpose, the client gone).
pub(super) struct Watching {
    pub(super) f: Filter,
    pub(super) as_table: bool,
    pub(super) include: String,
    pub(super) initial: bool,
    pub(super) initial_end: bool,
    pub(super) from: u64,
    pub(super) bookmarks: bool,
    pub(super) deadline: tokio::time::Instant,
    pub(super) changed: watch::Receiver<u64>,
    pub(super) ends: watch::Receiver<u64>,
    pub(super) expired: bool,
    pub(super) tx: mpsc::Sender<Result<Frame<Bytes>, Infallible>>,
    pub(super) first: bool,
}

impl Watching {
    /// Sends one event; false when the client is gone.
    async fn send(&mut self, v: Value) -> bool {
        let v = if self.as_table {
            let first = std::mem::replace(&mut self.first, false);
            table::event_table(self.f.r, v, &self.include, first)
        } else {
            v
        };
        let mut line = serde_json::to_vec(&v).expect("JSON");
        line.push(b'\n');
        self.tx
            .send(Ok(Frame::data(Bytes::from(line))))
            .await
            .is_ok()
    }

    pub(super) async fn run(mut self, api: Arc<Api>) {
        if self.expired {
            let ev = json!({"type": "ERROR", "object": status_value(
                410,
                "Expired",
                &format!("too old resource version: {} (a fault of the lab's API, on purpose)", self.from),
                Value::Null,
            )});
            self.send(ev).await;
            return;
        }
        // Where this watch stands.
        let mut at = if self.initial {
            let (items, rv) = {
                let s = api.store.lock().expect("store lock");
                let items: Vec<Arc<Value>> = s
                    .list(self.f.r, self.f.namespace.as_deref())
                    .into_iter()
                    .filter(|o| self.f.matches(o))
                    .collect();
                (items, s.rv())
            };
            for o in &items {
                let ev = json!({"type": "ADDED", "object": o.as_ref()});
                if !self.send(ev).await {
                    return;
                }
            }
            if self.initial_end {
                let ev = bookmark(self.f.r, rv, true);
                if !self.send(ev).await {
                    return;
                }
            }
            rv
        } else {
            self.from
        };
        let mut tick = tokio::time::interval(BOOKMARK_EVERY);
        tick.tick().await;
        loop {
            let events = api.store.lock().expect("store lock").since(at);
            match events {
                Err(too_old) => {
                    let ev = json!({"type": "ERROR", "object": status_value(
                        410,
                        "Expired",
                        &format!("too old resource version: {at} ({})", too_old.oldest.saturating_sub(1)),
                        Value::Null,
                    )});
                    self.send(ev).await;
                    return;
                }
                Ok(events) => {
                    for e in events {
                        at = e.rv;
                        if let Some(ev) = self.f.event(&e) {
                            if !self.send(ev).await {
                                return;
                            }
                        }
                    }
                }
            }
            tokio::select! {
                c = self.changed.changed() => if c.is_err() { return },
                _ = self.ends.changed() => return,
                _ = tick.tick() => {
                    if self.bookmarks {
                        let ev = bookmark(self.f.r, at, false);
                        if !self.send(ev).await {
                            return;
                        }
                    }
                }
                _ = tokio::time::sleep_until(self.deadline) => return,
            }
        }
    }
}

/// The receiving end of a channel as a stream of body frames.
pub(super) fn tokio_stream(
    mut rx: mpsc::Receiver<Result<Frame<Bytes>, Infallible>>,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn bookmark(r: &Resource, rv: u64, initial_end: bool) -> Value {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"type": "BOOKMARK", "object": {
        "kind": r.kind,
        "apiVersion": r.api_version(),
        "metadata": meta,
    }})
}
