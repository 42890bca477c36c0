//! `podnet lab ui`: the map of a running lab (`podnet_ui`), served on a loopback port. The
//! page is made from the lab's Kubernetes API (the same watches as an agent's, kept running:
//! a reload shows what changed), and its `/flows` is every node's flow log as server-sent
//! events, for the page to draw as they happen.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::{Request, Response, StatusCode};
use podnet_flow::client::Event;
use podnet_flow::record::Flow;

use crate::{load_state, LabError};

type Body = BoxBody<Bytes, Infallible>;

/// A request for the page as the API is now, to the task that follows the API.
type PageAsked = tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<String>>;

/// What the server holds: where to ask for the page, and the flows since it started (the
/// latest, and the feed of new ones: a page that connects late still gets what came before).
struct Shared {
    pages: PageAsked,
    flows: podnet_flow::store::Store,
}

fn watch_error(e: impl std::fmt::Display) -> LabError {
    LabError::Invalid(format!("the lab's API: {e}"))
}

/// Serves the lab `lab`'s map on `listener` until the process ends (`ready` is called once
/// the API is listed and every node's agent is reached).
pub async fn serve(
    lab: &str,
    listener: tokio::net::TcpListener,
    ready: impl FnOnce(),
) -> Result<(), LabError> {
    let st = load_state(lab)?;
    let dir = crate::agents::dir(lab);
    // The API on the host's loopback (the agents' kubeconfig names it as the nodes reach it).
    let client = podnet_watch::client(Some(&crate::kubeconfig(lab)?))
        .await
        .map_err(watch_error)?;
    let overrides = podnet_watch::settings(Some(&dir.join("config.json")), &Default::default())
        .map_err(watch_error)?;
    let mut model = podnet_model::ApiModel::new(&overrides).map_err(|e| watch_error(&e))?;
    let mut watch = podnet_watch::ClusterWatch::start(&client, Default::default());
    watch
        .until_ready(&mut model)
        .await
        .ok_or_else(|| watch_error("the watches ended"))?;
    let title = format!("lab {lab}");
    let page = move |m: &podnet_model::ApiModel| {
        podnet_ui::page(&podnet_ui::View::of(m.cluster()), &title, Some("/flows"))
    };
    // The model follows the API; the page is made from it when a browser asks (the matrix
    // judges every pair of pods: not for every change of the API).
    let (pages, mut asked) = tokio::sync::mpsc::channel::<tokio::sync::oneshot::Sender<String>>(16);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                round = watch.next(&mut model) => if round.is_none() { return },
                reply = asked.recv() => match reply {
                    Some(reply) => drop(reply.send(page(&model))),
                    None => return,
                },
            }
        }
    });
    let shared = Arc::new(Shared {
        pages,
        flows: Default::default(),
    });
    // Every node's flows, from now on, into the feed.
    let agents = crate::observe::agents(&st);
    let feed = shared.clone();
    let since = jiff::Timestamp::now();
    std::thread::Builder::new()
        .name("podnet-ui-flows".into())
        .spawn(move || {
            // Those held from before the server started are not news.
            let filter = podnet_flow::Filter {
                since: Some(since),
                ..Default::default()
            };
            let r = podnet_flow::client::observe(agents, &filter, true, |e| {
                match e {
                    Event::Flow(f) => feed.flows.push(*f),
                    // An agent started again is followed again.
                    Event::Gone { agent, why } => {
                        eprintln!("lab ui: {agent}: {why}; trying again")
                    }
                    Event::Back { agent } => eprintln!("lab ui: {agent}: followed again"),
                }
                true
            });
            if let Err(e) = r {
                eprintln!("lab ui: the flows ended: {}", podnet_node::chain(&e));
            }
        })
        .map_err(|source| LabError::Io {
            what: "starting the flows' reader".into(),
            source,
        })?;
    ready();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(answer(&shared, req.uri().path()).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(shared: &Shared, path: &str) -> Response<Body> {
    let ok = |ct: &str| {
        Response::builder()
            .status(StatusCode::OK)
            .header(hyper::header::CONTENT_TYPE, ct)
            .header(hyper::header::CACHE_CONTROL, "no-store")
    };
    match path {
        "/" => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let page = match shared.pages.send(tx).await {
                Ok(()) => rx.await.ok(),
                Err(_) => None,
            };
            match page {
                Some(page) => ok("text/html; charset=utf-8")
                    .body(Full::new(Bytes::from(page)).boxed())
                    .expect("a response"),
                None => Response::builder()
                    .status(StatusCode::SERVICE_UNAVAILABLE)
                    .body(Full::new(Bytes::from_static(b"the lab's API watch ended\n")).boxed())
                    .expect("a response"),
            }
        }
        "/flows" => {
            let (latest, rx) = shared.flows.follow();
            let event = |f: &Flow| {
                let json = serde_json::to_string(f).expect("a flow is JSON");
                Ok::<_, Infallible>(hyper::body::Frame::data(Bytes::from(format!(
                    "data: {json}\n\n"
                ))))
            };
            let before: Vec<_> = latest.iter().map(|f| event(f)).collect();
            let events = futures_util::stream::unfold(rx, |mut rx| async move {
                use tokio::sync::broadcast::error::RecvError;
                loop {
                    match rx.recv().await {
                        Ok(f) => {
                            let json = serde_json::to_string(&*f).expect("a flow is JSON");
                            let frame =
                                hyper::body::Frame::data(Bytes::from(format!("data: {json}\n\n")));
                            return Some((Ok::<_, Infallible>(frame), rx));
                        }
                        Err(RecvError::Lagged(_)) => continue,
                        Err(RecvError::Closed) => return None,
                    }
                }
            });
            // A comment first: the browser's EventSource opens at once.
            let hello = futures_util::stream::iter(
                std::iter::once(Ok::<_, Infallible>(hyper::body::Frame::data(
                    Bytes::from_static(b": podnet flows\n\n"),
                )))
                .chain(before),
            );
            use futures_util::StreamExt;
            ok("text/event-stream")
                .body(BodyExt::boxed(StreamBody::new(hello.chain(events))))
                .expect("a response")
        }
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::from_static(b"not found\n")).boxed())
            .expect("a response"),
    }
}
