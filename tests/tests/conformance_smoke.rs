//! The conformance harness starts the servers it promises.
use palisade_tests::servers::{Httpbin, Nginx};

#[tokio::test]
async fn nginx_serves_a_static_file_over_http_and_h2() {
    let nginx = Nginx::config().http2().start();
    nginx.write_file("/hello.txt", b"hello");
    let ca = reqwest::Certificate::from_pem(nginx.ca().unwrap().ca_pem.as_bytes()).unwrap();
    let plain = reqwest::get(nginx.url("/hello.txt")).await.unwrap();
    assert_eq!(plain.text().await.unwrap(), "hello");
    let tls = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let res = tls.get(nginx.tls_url("/hello.txt")).send().await.unwrap();
    assert_eq!(res.version(), http::Version::HTTP_2);
    assert_eq!(res.text().await.unwrap(), "hello");
}

#[tokio::test]
async fn httpbin_answers() {
    let bin = Httpbin::start();
    let res = reqwest::get(bin.url("/status/418")).await.unwrap();
    assert_eq!(res.status(), 418);
}
