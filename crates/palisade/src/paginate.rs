//! Pagination: every item of a paged listing, as one lazy stream.
//!
//! [`Client::paginate`] sends the first page's request, yields that page's
//! items one by one, and fetches the next page only when the consumer asks
//! for the item after the last one. Memory holds one page; a slow consumer
//! slows the fetching down (backpressure), and dropping the stream stops it.
//!
//! Every page request goes through the client's whole stack (deadline,
//! retry, breaker, limits), under the same method, headers, body and
//! per-request overrides as the first request.
//!
//! How the next page is found is a [`Pagination`]:
//!
//! - [`Pagination::link`]: the `Link` header's `rel="next"` target (RFC 8288),
//!   as GitHub and many REST APIs send;
//! - [`Pagination::cursor`]: a cursor in the JSON body, sent back in a query
//!   parameter (Stripe, Slack, most GraphQL-over-REST listings);
//! - [`Pagination::page_number`] and [`Pagination::offset`]: a counter in a
//!   query parameter, until a stop condition.
//!
//! A page that fails ends the stream with one error that names the page
//! ("page 3 failed") and keeps the original error as its source, with its
//! kind, status and URL. Items already yielded stand.
//!
//! ```no_run
//! use futures_util::StreamExt;
//! use palisade::{Client, Pagination};
//!
//! #[derive(serde::Deserialize)]
//! struct Repo { name: String }
//!
//! # async fn run() -> Result<(), palisade::Error> {
//! let client = Client::builder().base_url("https://api.github.com/").build()?;
//! let request = client.get("orgs/rust-lang/repos").query(&[("per_page", "100")]);
//! let mut repos = client.paginate::<Repo>(request, Pagination::link());
//! while let Some(repo) = repos.next().await {
//!     println!("{}", repo?.name);
//! }
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use futures_util::stream::{self, StreamExt};
use http::HeaderMap;
use http::header::LINK;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::client::{Client, error_for_status};
use crate::error::{Error, Kind};
use crate::request::{Request, RequestBuilder};

/// How to find the next page of a listing, where its items are, and when to
/// stop. See the [module docs](self) and [`Client::paginate`].
///
/// Paths into the JSON body are JSON Pointers (RFC 6901, `/data/items`) or
/// dotted paths (`data.items`); the empty path is the whole document.
#[derive(Debug, Clone)]
pub struct Pagination {
    strategy: Strategy,
    items: String,
    max_pages: Option<u64>,
    page_size: Option<usize>,
    total: Option<String>,
}

#[derive(Debug, Clone)]
enum Strategy {
    Link,
    Cursor { cursor: String, param: String },
    Number { param: String, first: u64 },
    Offset { param: String, first: u64 },
}

impl Pagination {
    /// Follows the `Link` header's `rel="next"` target (RFC 8288) until a
    /// page has none. A relative target is resolved against the page's URL.
    /// Items default to the whole body, a JSON array (GitHub's shape).
    pub fn link() -> Self {
        Self::with(Strategy::Link)
    }

    /// Reads the next cursor at `cursor_path` in each page's JSON body and
    /// sends it back in the query parameter `param`, until the cursor is
    /// missing, `null` or empty. A string or a number is accepted. Set where
    /// the items are with [`items`](Self::items).
    ///
    /// ```
    /// // {"data": [...], "meta": {"next": "abc"}}  ->  ?cursor=abc
    /// let p = palisade::Pagination::cursor("meta.next", "cursor").items("data");
    /// # let _ = p;
    /// ```
    pub fn cursor(cursor_path: &str, param: &str) -> Self {
        Self::with(Strategy::Cursor {
            cursor: pointer(cursor_path),
            param: param.to_owned(),
        })
    }

    /// Sends the page number in the query parameter `param`, from 1 (see
    /// [`starting_at`](Self::starting_at)), until a stop condition: an empty
    /// page always stops; [`page_size`](Self::page_size),
    /// [`total`](Self::total) and [`max_pages`](Self::max_pages) stop sooner.
    pub fn page_number(param: &str) -> Self {
        Self::with(Strategy::Number {
            param: param.to_owned(),
            first: 1,
        })
    }

    /// Sends the number of items already received in the query parameter
    /// `param`, from 0 (see [`starting_at`](Self::starting_at)), so a server
    /// that caps the page size is still walked without gaps. It stops as
    /// [`page_number`](Self::page_number) does.
    pub fn offset(param: &str) -> Self {
        Self::with(Strategy::Offset {
            param: param.to_owned(),
            first: 0,
        })
    }

    fn with(strategy: Strategy) -> Self {
        Self {
            strategy,
            items: String::new(),
            max_pages: None,
            page_size: None,
            total: None,
        }
    }

    /// Where each page's items are: a JSON array (default: the whole body).
    /// A `null` there is an empty page; a missing field is an error, as it
    /// usually means a wrong path.
    pub fn items(mut self, path: &str) -> Self {
        self.items = pointer(path);
        self
    }

    /// The first page number or offset (default 1 for page numbers, 0 for
    /// offsets). Ignored by the link and cursor strategies.
    pub fn starting_at(mut self, first: u64) -> Self {
        match &mut self.strategy {
            Strategy::Number { first: f, .. } | Strategy::Offset { first: f, .. } => *f = first,
            Strategy::Link | Strategy::Cursor { .. } => {}
        }
        self
    }

    /// For page numbers and offsets: a page with fewer than `n` items is the
    /// last, which saves the request for the empty page after it. Default:
    /// none (only an empty page stops).
    pub fn page_size(mut self, n: usize) -> Self {
        self.page_size = Some(n);
        self
    }

    /// For page numbers and offsets: the total number of items is at `path`
    /// in each page's body; the listing ends once that many were received.
    pub fn total(mut self, path: &str) -> Self {
        self.total = Some(pointer(path));
        self
    }

    /// Fetches at most `n` pages, whatever the strategy (default: no
    /// limit). A safety net against a server that never stops linking.
    pub fn max_pages(mut self, n: u64) -> Self {
        self.max_pages = Some(n);
        self
    }
}

/// A path into a JSON document as a JSON Pointer: pointers pass through,
/// dotted paths are converted, and "" or "/" is the whole document.
fn pointer(path: &str) -> String {
    if path.is_empty() || path == "/" {
        return String::new();
    }
    if path.starts_with('/') {
        return path.to_owned();
    }
    path.split('.').fold(String::new(), |mut p, seg| {
        p.push('/');
        p.push_str(&seg.replace('~', "~0").replace('/', "~1"));
        p
    })
}

/// Names a place in the body for an error message.
fn where_(pointer: &str) -> String {
    if pointer.is_empty() {
        "the body".to_owned()
    } else {
        format!("the value at {pointer:?}")
    }
}

/// Wraps the error of page `page`, keeping its kind, status, URL and
/// attempts, and the original as the source.
fn page_error(err: Error, page: u64) -> Error {
    let mut e = Error::new(err.kind())
        .with_message(format!("page {page} failed"))
        .with_url(err.url().cloned())
        .with_retry_after(err.retry_after())
        .with_attempts(err.attempts());
    if let Some(status) = err.status() {
        e = e.with_status(status);
    }
    e.with_source(err)
}

fn decode_error(page: u64, url: &reqwest::Url, message: String) -> Error {
    Error::new(Kind::Decode)
        .with_message(format!("page {page}: {message}"))
        .with_url(Some(url.clone()))
}

/// The items of a paged listing, fetched a page at a time as they are
/// consumed. Created by [`Client::paginate`]; see the [module docs](self).
#[must_use = "streams do nothing unless polled"]
pub struct Paginate<T> {
    inner: Pin<Box<dyn Stream<Item = Result<T, Error>> + Send>>,
}

impl<T> fmt::Debug for Paginate<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Paginate").finish_non_exhaustive()
    }
}

impl<T> Stream for Paginate<T> {
    type Item = Result<T, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl Client {
    /// Every item of a paged listing, as a lazy stream: `request` is the
    /// first page's request, `pagination` says how to find the next. Each
    /// page is fetched through this client's whole stack only when its first
    /// item is asked for; see [`Pagination`].
    ///
    /// Each item is decoded from JSON into `T`. The stream ends after the
    /// last page, or with one error (naming the page) at the first failure.
    pub fn paginate<T>(&self, request: RequestBuilder, pagination: Pagination) -> Paginate<T>
    where
        T: DeserializeOwned + Send + 'static,
    {
        let state = match request.build() {
            Ok(template) => {
                let first = first_url(&template.url, &pagination.strategy);
                State {
                    client: self.clone(),
                    template: Some(template),
                    next: Some(first),
                    error: None,
                    pagination,
                    items: VecDeque::new(),
                    page: 0,
                    item: 0,
                    received: 0,
                    previous: None,
                    here: None,
                    _item: PhantomData,
                }
            }
            Err(e) => State {
                client: self.clone(),
                template: None,
                next: None,
                error: Some(page_error(e, 1)),
                pagination,
                items: VecDeque::new(),
                page: 0,
                item: 0,
                received: 0,
                previous: None,
                here: None,
                _item: PhantomData,
            },
        };
        Paginate {
            inner: stream::unfold(state, State::step).boxed(),
        }
    }
}

fn first_url(url: &reqwest::Url, strategy: &Strategy) -> reqwest::Url {
    match strategy {
        Strategy::Link | Strategy::Cursor { .. } => url.clone(),
        Strategy::Number { param, first } | Strategy::Offset { param, first } => {
            with_query(url, param, &first.to_string())
        }
    }
}

/// `url` with the query parameter `name` set to `value` (replacing it if
/// present), other parameters kept in order.
fn with_query(url: &reqwest::Url, name: &str, value: &str) -> reqwest::Url {
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut next = url.clone();
    next.query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair(name, value);
    next
}

struct State<T> {
    client: Client,
    /// The first page's request; every next page is a follow-up of it, so
    /// its headers' credentials stay with its origin.
    template: Option<Request>,
    /// The next page to fetch; `None` once the listing is done.
    next: Option<reqwest::Url>,
    /// An error to yield before ending.
    error: Option<Error>,
    pagination: Pagination,
    /// The current page's items not yet yielded.
    items: VecDeque<Value>,
    /// Pages fetched so far.
    page: u64,
    /// The index in its page of the next item.
    item: usize,
    /// Items received so far, over every page.
    received: u64,
    /// The previous page's next-page marker, to stop a server that links a
    /// page to itself.
    previous: Option<String>,
    /// The URL of the page the items come from.
    here: Option<reqwest::Url>,
    _item: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> State<T> {
    async fn step(mut self) -> Option<(Result<T, Error>, Self)> {
        loop {
            if let Some(value) = self.items.pop_front() {
                let index = self.item;
                self.item += 1;
                return match serde_json::from_value(value) {
                    Ok(item) => Some((Ok(item), self)),
                    Err(e) => {
                        let url = self.here.clone();
                        self.stop();
                        let err = Error::new(Kind::Decode)
                            .with_message(format!("page {}, item {index}", self.page))
                            .with_source(e)
                            .with_url(url);
                        Some((Err(err), self))
                    }
                };
            }
            if let Some(err) = self.error.take() {
                self.stop();
                return Some((Err(err), self));
            }
            let url = self.next.take()?;
            if let Err(err) = self.fetch(url).await {
                self.stop();
                return Some((Err(err), self));
            }
        }
    }

    fn stop(&mut self) {
        self.next = None;
        self.items.clear();
    }

    /// Fetches one page: its items go to `self.items`, and the next page's
    /// URL, if any, to `self.next`.
    async fn fetch(&mut self, url: reqwest::Url) -> Result<(), Error> {
        if let Some(t) = self.template.as_mut()
            && !crate::hop::same_origin(&url, t.headers_origin())
        {
            // Once a link leaves the first page's origin, the caller's
            // credentials stay behind for every later page too.
            t.headers_origin = Some(t.headers_origin().clone());
            self.client.inner().credentials.filter(&mut t.headers);
        }
        let Some(template) = &self.template else {
            return Ok(());
        };
        let page = self.page + 1;
        self.page = page;
        self.item = 0;
        let client = &self.client;
        let res = async { error_for_status(client.execute(template.follow_up(&url)?).await?) }
            .await
            .map_err(|e| page_error(e, page))?;
        // After redirects: relative links resolve against where the page is.
        let here = res.url().clone();
        self.here = Some(here.clone());
        let link_next = match self.pagination.strategy {
            Strategy::Link => next_link(res.headers())
                .map(|target| {
                    here.join(&target).map_err(|e| {
                        decode_error(page, &here, format!("bad Link target {target:?}: {e}"))
                    })
                })
                .transpose()?,
            _ => None,
        };
        let bytes = crate::limit::read(res, None, 0)
            .await
            .map_err(|e| page_error(e, page))?;
        let mut doc: Value = serde_json::from_slice(&bytes).map_err(|e| {
            page_error(
                Error::from_body(e.into(), true).with_url(Some(here.clone())),
                page,
            )
        })?;
        drop(bytes);

        let total = match &self.pagination.total {
            Some(path) => match doc.pointer(path) {
                Some(Value::Number(n)) => n.as_u64(),
                _ => {
                    return Err(decode_error(
                        page,
                        &here,
                        format!("no total count at {path:?}"),
                    ));
                }
            },
            None => None,
        };
        let cursor = match &self.pagination.strategy {
            Strategy::Cursor { cursor, .. } => match doc.pointer(cursor) {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if s.is_empty() => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                Some(other) => {
                    return Err(decode_error(
                        page,
                        &here,
                        format!(
                            "the cursor at {cursor:?} is neither a string nor a number: {other}"
                        ),
                    ));
                }
            },
            _ => None,
        };
        let items = match doc.pointer_mut(&self.pagination.items).map(Value::take) {
            Some(Value::Array(items)) => items,
            Some(Value::Null) => Vec::new(),
            Some(_) => {
                return Err(decode_error(
                    page,
                    &here,
                    format!(
                        "{} is not an array of items",
                        where_(&self.pagination.items)
                    ),
                ));
            }
            None => {
                return Err(decode_error(
                    page,
                    &here,
                    format!("nothing at {:?}, the items path", self.pagination.items),
                ));
            }
        };
        drop(doc);
        let count = items.len();
        self.received += count as u64;
        self.items = items.into();

        let next = match &self.pagination.strategy {
            Strategy::Link => link_next.map(|u| (u.to_string(), u)),
            Strategy::Cursor { param, .. } => cursor.map(|c| {
                let u = with_query(&template.url, param, &c);
                (c, u)
            }),
            Strategy::Number { param, first } => {
                let n = first.saturating_add(page);
                (!self.last_counted_page(count, total)).then(|| {
                    (
                        n.to_string(),
                        with_query(&template.url, param, &n.to_string()),
                    )
                })
            }
            Strategy::Offset { param, first } => {
                let n = first.saturating_add(self.received);
                (!self.last_counted_page(count, total)).then(|| {
                    (
                        n.to_string(),
                        with_query(&template.url, param, &n.to_string()),
                    )
                })
            }
        };
        let Some((marker, next)) = next else {
            return Ok(());
        };
        if self.pagination.max_pages.is_some_and(|max| page >= max) {
            return Ok(());
        }
        if next == url || self.previous.as_deref() == Some(marker.as_str()) {
            // This page's items are good: yield them, then the error.
            self.error = Some(decode_error(
                page,
                &here,
                "the next page is the page just fetched (a pagination loop)".to_owned(),
            ));
            return Ok(());
        }
        self.previous = Some(marker);
        self.next = Some(next);
        Ok(())
    }

    /// The stop condition of page numbers and offsets.
    fn last_counted_page(&self, count: usize, total: Option<u64>) -> bool {
        count == 0
            || self.pagination.page_size.is_some_and(|size| count < size)
            || total.is_some_and(|t| self.received >= t)
    }
}

/// The target of the first `rel="next"` link in the `Link` headers.
pub(crate) fn next_link(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(parse_links)
        .find(|link| {
            link.rel
                .split_ascii_whitespace()
                .any(|r| r.eq_ignore_ascii_case("next"))
        })
        .map(|link| link.target)
}

#[derive(Debug, PartialEq, Eq)]
struct Link {
    target: String,
    /// The `rel` parameter: space-separated relation types.
    rel: String,
}

/// Parses a `Link` header value (RFC 8288 section 3): `<target>; param=value;
/// param="quoted, value", <target>...`. Malformed links are skipped; a
/// comma inside `<...>` or a quoted string does not split links.
fn parse_links(value: &str) -> Vec<Link> {
    let mut links = Vec::new();
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_ascii_whitespace());
        if rest.is_empty() {
            return links;
        }
        let Some(after) = rest.strip_prefix('<') else {
            // Not a link: skip to the next top-level comma.
            rest = skip_param_value(rest).1;
            rest = rest.strip_prefix(';').unwrap_or(rest);
            continue;
        };
        let Some(end) = after.find('>') else {
            return links;
        };
        let target = after[..end].trim().to_owned();
        rest = &after[end + 1..];
        let mut rel = None;
        loop {
            rest = rest.trim_start();
            let Some(p) = rest.strip_prefix(';') else {
                break;
            };
            let p = p.trim_start();
            let name_end = p
                .find(|c: char| c == '=' || c == ';' || c == ',' || c.is_ascii_whitespace())
                .unwrap_or(p.len());
            let name = &p[..name_end];
            let mut r = p[name_end..].trim_start();
            let mut val = String::new();
            if let Some(v) = r.strip_prefix('=') {
                let (parsed, left) = skip_param_value(v.trim_start());
                val = parsed;
                r = left;
            }
            // The first occurrence of rel wins (RFC 8288 section 3.3).
            if name.eq_ignore_ascii_case("rel") && rel.is_none() {
                rel = Some(val);
            }
            rest = r;
        }
        links.push(Link {
            target,
            rel: rel.unwrap_or_default(),
        });
        // Anything after the parameters up to the next comma is junk.
        match rest.find(',') {
            Some(i) if !rest[..i].trim().is_empty() => rest = &rest[i..],
            _ => {}
        }
    }
}

/// Reads one parameter value (a token or a quoted string) and returns it
/// with the rest of the input, which starts at the next `;` or `,`.
fn skip_param_value(s: &str) -> (String, &str) {
    if let Some(q) = s.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = q.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, e)) = chars.next() {
                        out.push(e);
                    }
                }
                '"' => {
                    let left = &q[i + 1..];
                    let cut = left.find([';', ',']).unwrap_or(left.len());
                    return (out, &left[cut..]);
                }
                _ => out.push(c),
            }
        }
        return (out, "");
    }
    let end = s.find([';', ',']).unwrap_or(s.len());
    (s[..end].trim().to_owned(), &s[end..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links(s: &str) -> Vec<(String, String)> {
        parse_links(s)
            .into_iter()
            .map(|l| (l.target, l.rel))
            .collect()
    }

    #[test]
    fn github_style_link_header() {
        let v = r#"<https://api.github.com/repositories/1/issues?page=2>; rel="next", <https://api.github.com/repositories/1/issues?page=5>; rel="last""#;
        assert_eq!(
            links(v),
            vec![
                (
                    "https://api.github.com/repositories/1/issues?page=2".into(),
                    "next".into()
                ),
                (
                    "https://api.github.com/repositories/1/issues?page=5".into(),
                    "last".into()
                ),
            ]
        );
    }

    #[test]
    fn commas_inside_targets_and_quotes_do_not_split_links() {
        let v = r#"</a?x=1,2>; title="one, two"; rel=prev, </b>; rel="next""#;
        assert_eq!(
            links(v),
            vec![
                ("/a?x=1,2".into(), "prev".into()),
                ("/b".into(), "next".into())
            ]
        );
    }

    #[test]
    fn rel_is_case_insensitive_and_may_list_several_types() {
        let mut h = HeaderMap::new();
        h.append(LINK, r#"</first>; REL="first""#.parse().unwrap());
        h.append(LINK, r#"</n>; Rel="Next last""#.parse().unwrap());
        assert_eq!(next_link(&h).as_deref(), Some("/n"));
    }

    #[test]
    fn only_the_first_rel_counts_and_escapes_are_read() {
        assert_eq!(
            links(r#"</x>; rel="ne\xt"; rel="prev""#),
            vec![("/x".into(), "next".into())]
        );
    }

    #[test]
    fn malformed_links_are_skipped_not_fatal() {
        assert_eq!(
            links(r#"garbage; rel=next, </ok>; rel=next, <unterminated"#),
            vec![("/ok".into(), "next".into())]
        );
        assert!(links("").is_empty());
        assert!(next_link(&HeaderMap::new()).is_none());
    }

    #[test]
    fn paths_become_json_pointers() {
        assert_eq!(pointer(""), "");
        assert_eq!(pointer("/"), "");
        assert_eq!(pointer("/data/items"), "/data/items");
        assert_eq!(pointer("meta.next"), "/meta/next");
        assert_eq!(pointer("a/b.c~d"), "/a~1b/c~0d");
    }

    #[test]
    fn with_query_replaces_the_parameter_and_keeps_the_others() {
        let u: reqwest::Url = "https://x.test/l?limit=10&page=1&q=a%20b".parse().unwrap();
        assert_eq!(
            with_query(&u, "page", "2").as_str(),
            "https://x.test/l?limit=10&q=a+b&page=2"
        );
    }
}
