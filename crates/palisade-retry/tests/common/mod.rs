//! Test helpers: a scripted upstream and an event recorder.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response};
use http_body_util::BodyExt;
use palisade_core::error::Elapsed;
use palisade_core::{Body, BoxError, TransportError, TransportErrorKind};
use tokio::time::Instant;

/// One scripted outcome.
#[derive(Clone, Debug)]
pub enum Step {
    Status(u16, Vec<(&'static str, String)>),
    Fail(TransportErrorKind),
    AttemptTimeout,
    /// Waits, then behaves as the inner step.
    After(Duration, Box<Step>),
}

pub fn status(code: u16) -> Step {
    Step::Status(code, Vec::new())
}

pub fn status_with(code: u16, name: &'static str, value: impl Into<String>) -> Step {
    Step::Status(code, vec![(name, value.into())])
}

pub fn after(d: Duration, step: Step) -> Step {
    Step::After(d, Box::new(step))
}

/// What the upstream saw of one attempt.
#[derive(Clone, Debug)]
pub struct Seen {
    pub at: Instant,
    pub method: Method,
    pub headers: HeaderMap,
    /// The body read whole, or the error reading it gave.
    pub body: Result<Bytes, String>,
}

#[derive(Default)]
struct ScriptState {
    steps: VecDeque<Step>,
    last: Option<Step>,
    seen: Vec<Seen>,
}

/// An upstream that answers with its script, in order; the last step
/// repeats.
#[derive(Clone)]
pub struct Scripted {
    state: Arc<Mutex<ScriptState>>,
}

impl Scripted {
    pub fn new(steps: impl IntoIterator<Item = Step>) -> Self {
        Self {
            state: Arc::new(Mutex::new(ScriptState {
                steps: steps.into_iter().collect(),
                ..ScriptState::default()
            })),
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    pub fn calls(&self) -> usize {
        self.state.lock().unwrap().seen.len()
    }

    /// The gaps between consecutive attempts' starts.
    pub fn gaps(&self) -> Vec<Duration> {
        let seen = self.seen();
        seen.windows(2).map(|w| w[1].at - w[0].at).collect()
    }

    fn next_step(&self) -> Step {
        let mut st = self.state.lock().unwrap();
        match st.steps.pop_front() {
            Some(s) => {
                st.last = Some(s.clone());
                s
            }
            None => st.last.clone().unwrap_or(Step::Status(200, Vec::new())),
        }
    }
}

pub type BoxFut<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

fn run(step: Step) -> BoxFut<Response<String>> {
    Box::pin(async move {
        let mut step = step;
        while let Step::After(d, inner) = step {
            tokio::time::sleep(d).await;
            step = *inner;
        }
        match step {
            Step::Status(code, headers) => {
                let mut b = Response::builder().status(code);
                for (k, v) in headers {
                    b = b.header(k, v);
                }
                Ok(b.body(format!("status {code}")).unwrap())
            }
            Step::Fail(kind) => Err(TransportError::new(kind, "scripted failure").into()),
            Step::AttemptTimeout => Err(Elapsed.into()),
            Step::After(..) => unreachable!(),
        }
    })
}

impl tower::Service<Request<Body>> for Scripted {
    type Response = Response<String>;
    type Error = BoxError;
    type Future = BoxFut<Response<String>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let at = Instant::now();
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(|c| c.to_bytes())
                .map_err(|e| e.to_string());
            let step = this.next_step();
            this.state.lock().unwrap().seen.push(Seen {
                at,
                method: parts.method,
                headers: parts.headers,
                body,
            });
            run(step).await
        })
    }
}

pub fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

pub fn post(uri: &str, body: &'static str) -> Request<Body> {
    Request::post(uri).body(Body::from(body)).unwrap()
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ---------------------------------------------------------------------------
// Event recording.

/// One recorded event: its message and fields, as strings.
#[derive(Clone, Debug)]
pub struct Event {
    pub target: String,
    pub name: String,
    pub fields: HashMap<String, String>,
}

impl Event {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

#[derive(Clone, Default)]
pub struct Recorder {
    events: Arc<Mutex<Vec<Event>>>,
}

impl Recorder {
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    pub fn named(&self, name: &str) -> Vec<Event> {
        self.events()
            .into_iter()
            .filter(|e| e.name == name)
            .collect()
    }

    /// Records this thread's events until the guard drops.
    ///
    /// One global subscriber routes events to the recorder of the thread
    /// that emits them: scoped subscribers race with tracing's global
    /// callsite-interest cache when tests run in parallel.
    pub fn install(&self) -> RecorderGuard {
        static GLOBAL: std::sync::Once = std::sync::Once::new();
        GLOBAL.call_once(|| {
            tracing::subscriber::set_global_default(Router).expect("no other global subscriber");
        });
        CURRENT.with(|c| *c.borrow_mut() = Some(self.clone()));
        RecorderGuard(())
    }
}

thread_local! {
    static CURRENT: std::cell::RefCell<Option<Recorder>> = const { std::cell::RefCell::new(None) };
}

/// Stops recording on drop.
pub struct RecorderGuard(());

impl Drop for RecorderGuard {
    fn drop(&mut self) {
        CURRENT.with(|c| *c.borrow_mut() = None);
    }
}

struct Router;

impl tracing::Subscriber for Router {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let rec = CURRENT.with(|c| c.borrow().clone());
        if let Some(rec) = rec {
            rec.record_event(event);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

struct Visitor<'a>(&'a mut HashMap<String, String>);

impl tracing::field::Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

impl Recorder {
    fn record_event(&self, event: &tracing::Event<'_>) {
        let mut fields = HashMap::new();
        event.record(&mut Visitor(&mut fields));
        let name = fields.remove("message").unwrap_or_default();
        self.events.lock().unwrap().push(Event {
            target: event.metadata().target().to_string(),
            name,
            fields,
        });
    }
}
