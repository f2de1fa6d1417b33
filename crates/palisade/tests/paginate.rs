//! Pagination against httpmock: each strategy, empty first pages, an error
//! mid-stream, loops, and backpressure (no page fetched before it is needed).

use futures_util::StreamExt;
use httpmock::prelude::*;
use palisade::{Client, Kind, Pagination};
use serde_json::json;

fn client(server: &MockServer) -> Client {
    Client::builder()
        .base_url(&server.base_url())
        .build()
        .unwrap()
}

async fn collect(
    mut s: impl futures_util::Stream<Item = Result<u32, palisade::Error>> + Unpin,
) -> Vec<Result<u32, palisade::Error>> {
    let mut out = Vec::new();
    while let Some(item) = s.next().await {
        out.push(item);
    }
    out
}

fn ok(items: &[Result<u32, palisade::Error>]) -> Vec<u32> {
    items
        .iter()
        .map(|r| *r.as_ref().expect("no error expected"))
        .collect()
}

#[tokio::test]
async fn link_header_walks_every_page_absolute_and_relative() {
    let server = MockServer::start_async().await;
    let page2 = server.url("/items?page=2");
    let p1 = server
        .mock_async(|when, then| {
            when.path("/items").query_param_missing("page");
            then.status(200)
                .header(
                    "link",
                    format!(r#"<{page2}>; rel="next", <{page2}>; rel="last""#),
                )
                .json_body(json!([1, 2]));
        })
        .await;
    let p2 = server
        .mock_async(|when, then| {
            when.path("/items").query_param("page", "2");
            then.status(200)
                .header(
                    "link",
                    r#"</items?page=1>; rel="prev", </items?page=3>; rel="next""#,
                )
                .json_body(json!([3]));
        })
        .await;
    let p3 = server
        .mock_async(|when, then| {
            when.path("/items").query_param("page", "3");
            then.status(200).json_body(json!([4, 5]));
        })
        .await;
    let client = client(&server);
    let items = collect(client.paginate::<u32>(client.get("items"), Pagination::link())).await;
    assert_eq!(ok(&items), [1, 2, 3, 4, 5]);
    assert_eq!(
        (
            p1.calls_async().await,
            p2.calls_async().await,
            p3.calls_async().await
        ),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn every_page_keeps_the_first_requests_headers() {
    let server = MockServer::start_async().await;
    let next = server.url("/h?page=2");
    server
        .mock_async(|when, then| {
            when.path("/h")
                .query_param_missing("page")
                .header("x-tenant", "acme");
            then.status(200)
                .header("link", format!("<{next}>; rel=next"))
                .json_body(json!([1]));
        })
        .await;
    let second = server
        .mock_async(|when, then| {
            when.path("/h")
                .query_param("page", "2")
                .header("x-tenant", "acme");
            then.status(200).json_body(json!([2]));
        })
        .await;
    let client = client(&server);
    let req = client.get("h").header("x-tenant", "acme");
    let items = collect(client.paginate::<u32>(req, Pagination::link())).await;
    assert_eq!(ok(&items), [1, 2]);
    second.assert_async().await;
}

#[tokio::test]
async fn cursor_in_the_body_is_sent_back_until_it_is_null() {
    let server = MockServer::start_async().await;
    let first = server
        .mock_async(|when, then| {
            when.path("/list")
                .query_param("limit", "2")
                .query_param_missing("cursor");
            then.status(200)
                .json_body(json!({"data": [1, 2], "meta": {"next": "c1"}}));
        })
        .await;
    let second = server
        .mock_async(|when, then| {
            when.path("/list")
                .query_param("limit", "2")
                .query_param("cursor", "c1");
            then.status(200)
                .json_body(json!({"data": [3, 4], "meta": {"next": 42}}));
        })
        .await;
    let third = server
        .mock_async(|when, then| {
            when.path("/list").query_param("cursor", "42");
            then.status(200)
                .json_body(json!({"data": [5], "meta": {"next": null}}));
        })
        .await;
    let client = client(&server);
    let req = client.get("list").query(&[("limit", "2")]);
    let pagination = Pagination::cursor("meta.next", "cursor").items("/data");
    let items = collect(client.paginate::<u32>(req, pagination)).await;
    assert_eq!(ok(&items), [1, 2, 3, 4, 5]);
    for m in [first, second, third] {
        m.assert_async().await;
    }
}

#[tokio::test]
async fn page_numbers_stop_at_a_short_page_without_asking_for_the_next() {
    let server = MockServer::start_async().await;
    let mut pages = Vec::new();
    for (n, body) in [(1, json!([1, 2])), (2, json!([3, 4])), (3, json!([5]))] {
        pages.push(
            server
                .mock_async(|when, then| {
                    when.path("/p").query_param("page", n.to_string());
                    then.status(200).json_body(body);
                })
                .await,
        );
    }
    let beyond = server
        .mock_async(|when, then| {
            when.path("/p").query_param("page", "4");
            then.status(200).json_body(json!([]));
        })
        .await;
    let client = client(&server);
    let pagination = Pagination::page_number("page").page_size(2);
    let items = collect(client.paginate::<u32>(client.get("p"), pagination)).await;
    assert_eq!(ok(&items), [1, 2, 3, 4, 5]);
    for p in &pages {
        assert_eq!(p.calls_async().await, 1);
    }
    assert_eq!(beyond.calls_async().await, 0, "a short page is the last");
}

#[tokio::test]
async fn page_numbers_without_a_size_stop_at_the_first_empty_page() {
    let server = MockServer::start_async().await;
    for (n, body) in [
        (0, json!({"r": [1]})),
        (1, json!({"r": [2]})),
        (2, json!({"r": []})),
    ] {
        server
            .mock_async(|when, then| {
                when.path("/z").query_param("p", n.to_string());
                then.status(200).json_body(body);
            })
            .await;
    }
    let client = client(&server);
    let pagination = Pagination::page_number("p").starting_at(0).items("r");
    let items = collect(client.paginate::<u32>(client.get("z"), pagination)).await;
    assert_eq!(ok(&items), [1, 2]);
}

#[tokio::test]
async fn offsets_advance_by_the_items_received_until_the_total() {
    let server = MockServer::start_async().await;
    // The server caps pages at 2 whatever the limit asked for.
    for (offset, items) in [(0, json!([1, 2])), (2, json!([3, 4])), (4, json!([5]))] {
        server
            .mock_async(|when, then| {
                when.path("/o")
                    .query_param("limit", "10")
                    .query_param("offset", offset.to_string());
                then.status(200)
                    .json_body(json!({"results": items, "count": 5}));
            })
            .await;
    }
    let client = client(&server);
    let req = client.get("o").query(&[("limit", "10")]);
    let pagination = Pagination::offset("offset").items("results").total("count");
    let items = collect(client.paginate::<u32>(req, pagination)).await;
    assert_eq!(ok(&items), [1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn an_empty_first_page_is_an_empty_stream_for_every_strategy() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            when.path("/e-link");
            then.status(200).json_body(json!([]));
        })
        .await;
    server
        .mock_async(|when, then| {
            when.path("/e-cursor");
            then.status(200)
                .json_body(json!({"data": [], "next": null}));
        })
        .await;
    let numbered = server
        .mock_async(|when, then| {
            when.path("/e-page");
            then.status(200).json_body(json!({"data": null}));
        })
        .await;
    let client = client(&server);
    let cases = [
        ("e-link", Pagination::link()),
        ("e-cursor", Pagination::cursor("next", "c").items("data")),
        ("e-page", Pagination::page_number("page").items("data")),
    ];
    for (path, pagination) in cases {
        let items = collect(client.paginate::<u32>(client.get(path), pagination)).await;
        assert!(items.is_empty(), "{path}: {items:?}");
    }
    assert_eq!(numbered.calls_async().await, 1);
}

#[tokio::test]
async fn a_failed_page_ends_the_stream_with_an_error_naming_it() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            when.path("/f").query_param("page", "1");
            then.status(200).json_body(json!([1, 2]));
        })
        .await;
    server
        .mock_async(|when, then| {
            when.path("/f").query_param("page", "2");
            then.status(404);
        })
        .await;
    let later = server
        .mock_async(|when, then| {
            when.path("/f").query_param("page", "3");
            then.status(200).json_body(json!([3]));
        })
        .await;
    let client = client(&server);
    let items =
        collect(client.paginate::<u32>(client.get("f"), Pagination::page_number("page"))).await;
    assert_eq!(items.len(), 3, "two items, then one error, then the end");
    assert_eq!(ok(&items[..2]), [1, 2], "items already yielded stand");
    let err = items[2].as_ref().unwrap_err();
    assert_eq!(err.kind(), Kind::Status);
    assert_eq!(err.status().map(|s| s.as_u16()), Some(404));
    assert!(err.to_string().contains("page 2 failed"), "{err}");
    assert!(err.url().unwrap().as_str().contains("page=2"));
    assert_eq!(later.calls_async().await, 0);
}

#[tokio::test]
async fn a_bad_body_is_a_decode_error_naming_the_page() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            when.path("/bad");
            then.status(200).json_body(json!({"items": [1]}));
        })
        .await;
    let client = client(&server);
    let wrong_path = Pagination::link().items("data");
    let items = collect(client.paginate::<u32>(client.get("bad"), wrong_path)).await;
    let err = items[0].as_ref().unwrap_err();
    assert_eq!((items.len(), err.kind()), (1, Kind::Decode));
    assert!(err.to_string().contains("page 1"), "{err}");

    let wrong_type = Pagination::link().items("items");
    let items = collect(client.paginate::<u32>(client.get("bad"), wrong_type)).await;
    assert_eq!(ok(&items), [1]);
    let strings = client.paginate::<String>(client.get("bad"), Pagination::link().items("items"));
    let items: Vec<_> = strings.collect().await;
    assert_eq!(items[0].as_ref().unwrap_err().kind(), Kind::Decode);
}

#[tokio::test]
async fn a_page_linking_to_itself_is_an_error_not_a_loop() {
    let server = MockServer::start_async().await;
    let me = server.url("/loop");
    let page = server
        .mock_async(|when, then| {
            when.path("/loop");
            then.status(200)
                .header("link", format!("<{me}>; rel=next"))
                .json_body(json!([7]));
        })
        .await;
    let client = client(&server);
    let items = collect(client.paginate::<u32>(client.get("loop"), Pagination::link())).await;
    assert_eq!(ok(&items[..1]), [7]);
    assert!(items[1].as_ref().unwrap_err().to_string().contains("loop"));
    assert_eq!(page.calls_async().await, 1);
}

#[tokio::test]
async fn max_pages_stops_an_endless_listing() {
    let server = MockServer::start_async().await;
    let pages = server
        .mock_async(|when, then| {
            when.path("/endless");
            then.status(200)
                .json_body(json!({"data": [1], "next": "more"}));
        })
        .await;
    let client = client(&server);
    // A cursor that changes every page would never stop on its own; here it
    // repeats, which max_pages(1) stops before the loop check fires.
    let pagination = Pagination::cursor("next", "c").items("data").max_pages(1);
    let items = collect(client.paginate::<u32>(client.get("endless"), pagination)).await;
    assert_eq!(ok(&items), [1]);
    assert_eq!(pages.calls_async().await, 1);
}

#[tokio::test]
async fn no_page_is_fetched_before_it_is_needed() {
    let server = MockServer::start_async().await;
    let next = server.url("/bp?page=2");
    let first = server
        .mock_async(|when, then| {
            when.path("/bp").query_param_missing("page");
            then.status(200)
                .header("link", format!("<{next}>; rel=next"))
                .json_body(json!([1, 2, 3]));
        })
        .await;
    let second = server
        .mock_async(|when, then| {
            when.path("/bp").query_param("page", "2");
            then.status(200).json_body(json!([4]));
        })
        .await;
    let client = client(&server);
    let mut items = client.paginate::<u32>(client.get("bp"), Pagination::link());
    assert_eq!(
        first.calls_async().await,
        0,
        "nothing is fetched before the first poll"
    );

    assert_eq!(items.next().await.unwrap().unwrap(), 1);
    assert_eq!(first.calls_async().await, 1);
    assert_eq!(second.calls_async().await, 0);

    assert_eq!(items.next().await.unwrap().unwrap(), 2);
    assert_eq!(items.next().await.unwrap().unwrap(), 3);
    assert_eq!(
        second.calls_async().await,
        0,
        "the last item of a page does not prefetch the next"
    );

    assert_eq!(items.next().await.unwrap().unwrap(), 4);
    assert_eq!(second.calls_async().await, 1);
    assert!(items.next().await.is_none());
    drop(items);
}

#[tokio::test]
async fn a_malformed_first_request_is_the_streams_only_error() {
    let client = Client::new().unwrap();
    let items: Vec<_> = client
        .paginate::<u32>(client.get("relative/without/base"), Pagination::link())
        .collect()
        .await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].as_ref().unwrap_err().kind(), Kind::InvalidRequest);
}
