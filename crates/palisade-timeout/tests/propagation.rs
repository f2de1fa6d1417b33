//! Sending the deadline downstream in a header and reading it back on a
//! server, whose outbound calls then inherit it. Paused clock, in memory.

use std::time::Duration;

use http::{Request, Response};
use palisade_core::{BoxError, Deadline};
use palisade_timeout::error::DeadlineExceeded;
use palisade_timeout::{
    AttemptTimeoutLayer, DeadlineHeader, DeadlineLayer, HeaderFormat, InheritDeadlineLayer, inherit,
};
use tokio::time::sleep;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// What the leaf service saw.
#[derive(Debug, PartialEq)]
struct Seen {
    header: Option<String>,
    remaining: Option<Duration>,
}

fn leaf() -> impl Service<Request<()>, Response = Response<Seen>, Error = BoxError> + Clone {
    service_fn(|req: Request<()>| async move {
        Ok::<_, BoxError>(Response::new(Seen {
            header: req
                .headers()
                .get("x-request-timeout-ms")
                .map(|v| v.to_str().unwrap().to_owned()),
            remaining: Deadline::of(&req).map(|d| d.remaining()),
        }))
    })
}

/// A server that works for `work`, then makes one outbound call through a
/// client stack with a 30 s budget that forwards the deadline header.
fn server(
    inherit_layer: InheritDeadlineLayer,
    work: Duration,
) -> impl Service<Request<()>, Response = Response<Seen>, Error = BoxError> + Clone {
    ServiceBuilder::new()
        .layer(inherit_layer)
        .service_fn(move |req: Request<()>| async move {
            let _ = req;
            sleep(work).await;
            let client = ServiceBuilder::new()
                .layer(
                    DeadlineLayer::builder()
                        .budget(Duration::from_secs(30))
                        .send_header(DeadlineHeader::default())
                        .build()?,
                )
                .service(leaf());
            client.oneshot(Request::new(())).await
        })
}

#[tokio::test(start_paused = true)]
async fn the_header_is_sent_and_read_back_and_the_fan_out_inherits_it() {
    // The caller: a 2 s budget, sent downstream.
    let caller = ServiceBuilder::new()
        .layer(
            DeadlineLayer::builder()
                .budget(ms(2000))
                .send_header(DeadlineHeader::default())
                .build()
                .unwrap(),
        )
        .service(server(InheritDeadlineLayer::default(), ms(500)));
    let res = caller.oneshot(Request::new(())).await.unwrap();
    // 2 s minus the 500 ms the server worked: not the server's own 30 s.
    assert_eq!(
        res.into_body(),
        Seen {
            header: Some("1500".into()),
            remaining: Some(ms(1500)),
        }
    );
}

#[tokio::test(start_paused = true)]
async fn the_attempt_header_carries_each_attempts_budget_to_the_server() {
    let caller = ServiceBuilder::new()
        .layer(DeadlineLayer::new(ms(5000)).unwrap())
        .layer(
            AttemptTimeoutLayer::builder()
                .timeout(ms(1200))
                .send_header(DeadlineHeader::default())
                .build()
                .unwrap(),
        )
        .service(server(InheritDeadlineLayer::default(), ms(200)));
    let res = caller.oneshot(Request::new(())).await.unwrap();
    assert_eq!(res.body().header.as_deref(), Some("1000"));
}

#[tokio::test(start_paused = true)]
async fn an_inherited_deadline_that_runs_out_fails_the_fan_out() {
    let req = Request::get("/")
        .header("x-request-timeout-ms", "300")
        .body(())
        .unwrap();
    let err = server(InheritDeadlineLayer::default(), ms(300))
        .oneshot(req)
        .await
        .unwrap_err();
    assert!(err.is::<DeadlineExceeded>(), "{err}");
}

#[tokio::test(start_paused = true)]
async fn the_server_caps_the_incoming_budget_and_ignores_garbage() {
    let capped = InheritDeadlineLayer::builder()
        .max(ms(700))
        .build()
        .unwrap();
    let req = Request::get("/")
        .header("x-request-timeout-ms", "90000")
        .body(())
        .unwrap();
    let res = server(capped, ms(0)).oneshot(req).await.unwrap();
    assert_eq!(res.body().remaining, Some(ms(700)));

    let req = Request::get("/")
        .header("x-request-timeout-ms", "-5")
        .body(())
        .unwrap();
    let res = server(InheritDeadlineLayer::default(), ms(0))
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(
        res.body().remaining,
        Some(Duration::from_secs(30)),
        "malformed: nothing inherited"
    );
}

#[tokio::test(start_paused = true)]
async fn a_grpc_style_header_round_trips() {
    let header = DeadlineHeader::grpc();
    let caller = ServiceBuilder::new()
        .layer(
            DeadlineLayer::builder()
                .budget(ms(1500))
                .send_header(header.clone())
                .build()
                .unwrap(),
        )
        .layer(InheritDeadlineLayer::new(header))
        .service_fn(|req: Request<()>| async move {
            assert_eq!(req.headers()["grpc-timeout"], "1500000u");
            Ok::<_, BoxError>(inherit::current().map(|d| d.remaining()))
        });
    assert_eq!(
        caller.oneshot(Request::new(())).await.unwrap(),
        Some(ms(1500))
    );

    let seconds = DeadlineHeader::new(
        http::HeaderName::from_static("x-timeout"),
        HeaderFormat::Seconds,
    );
    let mut headers = http::HeaderMap::new();
    seconds.write(&mut headers, ms(2250));
    assert_eq!(headers["x-timeout"], "2.250");
    assert_eq!(seconds.read(&headers), Some(ms(2250)));
}

#[tokio::test(start_paused = true)]
async fn the_handler_sees_the_incoming_deadline_in_its_extensions() {
    let svc = ServiceBuilder::new()
        .layer(InheritDeadlineLayer::default())
        .service_fn(|req: Request<()>| async move {
            Ok::<_, BoxError>(Deadline::of(&req).map(|d| d.remaining()))
        });
    let req = Request::get("/")
        .header("x-request-timeout-ms", "250")
        .body(())
        .unwrap();
    assert_eq!(svc.oneshot(req).await.unwrap(), Some(ms(250)));
}

#[tokio::test(start_paused = true)]
async fn without_a_header_the_server_sets_nothing() {
    let svc = ServiceBuilder::new()
        .layer(InheritDeadlineLayer::default())
        .service_fn(|req: Request<()>| async move {
            Ok::<_, BoxError>((Deadline::of(&req), inherit::current()))
        });
    assert_eq!(svc.oneshot(Request::new(())).await.unwrap(), (None, None));
}
