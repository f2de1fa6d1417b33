//! One logical request, hop by hop: the headers and credentials each hop
//! carries, the one deadline they all share, a 401's single replay, and
//! redirects that never corrupt a write.
//!
//! The rules, each in one place:
//! - **One deadline.** It is computed once, when the logical request
//!   starts, and every hop (redirects, the 401 replay) runs under it, as does
//!   a token fetch.
//! - **Credentials belong to an origin.** The client's default headers and
//!   auth belong to the base URL's origin; headers set on the request belong
//!   to its first hop's origin. A hop to any other origin (scheme, host and
//!   port; an https→http downgrade included) leaves without them
//!   ([`Credentials`](crate::credentials::Credentials)); the request's own,
//!   once dropped, stay dropped.
//! - **Redirects follow the Fetch standard.** 303 turns into a `GET` without
//!   a body (`HEAD` stays `HEAD`); 301 and 302 turn a `POST` into a `GET`
//!   without a body; every other redirect keeps its method and its body. A
//!   body is sent again only when it can be replayed at that moment;
//!   otherwise the redirect response goes back to the caller. No request is
//!   ever sent with its method kept and its body dropped.
//! - **A 401 is replayed at most once**, after one token refresh, and only
//!   when the body can be replayed at that moment.

use std::time::Duration;

use http::header::{
    ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LANGUAGE, CONTENT_LENGTH, CONTENT_LOCATION,
    CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION, RANGE, USER_AGENT,
};
use http::{Method, StatusCode};
use palisade_core::{Body, BoxError, Deadline};

use crate::client::Client;
use crate::error::{Error, Kind};
use crate::request::Request;

/// Whether two URLs share an origin: scheme, host and port (defaulted by
/// scheme). An https→http downgrade on the same host is another origin.
pub(crate) fn same_origin(a: &reqwest::Url, b: &reqwest::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str()
            .zip(b.host_str())
            .is_some_and(|(x, y)| x.eq_ignore_ascii_case(y))
        && a.port_or_known_default() == b.port_or_known_default()
}

/// What a redirect does to the method and the body (the Fetch standard,
/// "HTTP-redirect fetch", step 12).
fn redirect_method(status: StatusCode, method: &Method) -> (Method, bool) {
    let to_get = match status {
        StatusCode::SEE_OTHER => *method != Method::HEAD,
        StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND => *method == Method::POST,
        _ => false,
    };
    if to_get {
        (Method::GET, false)
    } else {
        (method.clone(), true)
    }
}

fn redirect_target(base: &reqwest::Url, headers: &HeaderMap) -> Option<reqwest::Url> {
    let loc = headers.get(LOCATION)?.to_str().ok()?;
    let next = base.join(loc).ok()?;
    matches!(next.scheme(), "http" | "https").then_some(next)
}

/// The `http::Uri` of a request to `url`.
fn parse_uri(url: &reqwest::Url) -> Result<http::Uri, Error> {
    url.as_str().parse().map_err(|e| {
        Error::invalid_request(format!("malformed URL: {e}")).with_url(Some(url.clone()))
    })
}

/// The response of a logical request and, when it was redirected, its URL.
pub(crate) type Answer = (http::Response<reqwest::Body>, Option<reqwest::Url>);

impl Client {
    /// The headers one hop to `url` carries: the request's own, then the
    /// client's defaults for names the request did not set, then the default
    /// `User-Agent`; each set's credentials only on its own origin.
    fn hop_headers(
        &self,
        url: &reqwest::Url,
        own: &mut HeaderMap,
        own_origin: &reqwest::Url,
    ) -> HeaderMap {
        // The request's own credentials, once dropped at a crossing, stay
        // dropped for the rest of the logical request, even on a hop back
        // to their origin: another origin must not choose where on it they
        // are sent (a 307 back to an endpoint of its choosing). The client's
        // auth and default headers, configured for the base origin, go to
        // it again.
        let inner = self.inner();
        if !same_origin(url, own_origin) {
            inner.credentials.filter(own);
        }
        // An empty map clones without allocating: a request with no
        // headers of its own, to a client with no default headers, costs
        // no header map at all.
        let mut out = own.clone();
        if !inner.headers.is_empty() {
            let home = inner.base_url.as_ref().unwrap_or(own_origin);
            let away = !same_origin(url, home);
            for (name, value) in &inner.headers {
                if own.contains_key(name) || (away && inner.credentials.stays_home(name, value)) {
                    continue;
                }
                out.append(name.clone(), value.clone());
            }
        }
        if let Some(ua) = &inner.user_agent
            && !out.contains_key(USER_AGENT)
        {
            out.insert(USER_AGENT, ua.clone());
        }
        if !out.contains_key(ACCEPT_ENCODING) {
            if out.contains_key(RANGE) {
                // A range is of the encoded bytes: ask for the file itself
                // (the reqwest transport would add its default otherwise).
                out.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
            } else if inner.custom_transport {
                // The reqwest transport sends this as a default header.
                out.insert(
                    ACCEPT_ENCODING,
                    HeaderValue::from_static(crate::limit::ACCEPT_ENCODING),
                );
            }
        }
        out
    }

    /// Whether the client negotiates the content coding of a hop with these
    /// headers, and so decodes its response: when nothing set
    /// `Accept-Encoding` and it asks for no range (a range is of the encoded
    /// bytes). A caller's own `Accept-Encoding` gets the body as it came.
    pub(crate) fn negotiates(headers: &HeaderMap) -> bool {
        !headers.contains_key(ACCEPT_ENCODING) && !headers.contains_key(RANGE)
    }

    /// Whether the final hop of `request` negotiated its coding: the
    /// request's headers merged with the client's defaults.
    pub(crate) fn negotiated(&self, request: &Request) -> bool {
        let defaults = &self.inner().headers;
        Self::negotiates(&request.headers)
            && !defaults.contains_key(ACCEPT_ENCODING)
            && !defaults.contains_key(RANGE)
    }

    /// Sends `request` hop by hop under one `deadline`. `first_uri` is the
    /// first hop's URI when the caller already parsed it. Returns the last
    /// response and, when it was redirected, its URL. The request is
    /// borrowed, so that its URL stays the caller's without a copy; its body
    /// is taken.
    pub(crate) async fn run(
        &self,
        request: &mut Request,
        mut first_uri: Option<http::Uri>,
        deadline: Option<Deadline>,
    ) -> Result<Answer, Error> {
        let inner = self.inner();
        let Request {
            method,
            url: first_url,
            headers,
            body,
            overrides,
            headers_origin,
        } = request;
        let own_origin: &reqwest::Url = headers_origin.as_ref().unwrap_or(first_url);
        let overrides = *overrides;
        let mut method = method.clone();
        let mut body = std::mem::replace(body, Body::empty());
        let mut redirected: Option<reqwest::Url> = None;
        let mut redirects = 0;
        let mut refreshed = false;
        loop {
            let url: &reqwest::Url = redirected.as_ref().unwrap_or(first_url);
            let uri = match first_uri.take() {
                Some(uri) => uri,
                None => parse_uri(url)?,
            };
            let mut req_headers = self.hop_headers(url, headers, own_origin);
            let mut used_token = None;
            if let Some(auth) = inner.auth.as_ref().filter(|a| a.applies_to(&uri)) {
                // Boxed: the token fetch's future would otherwise size
                // every call's, with or without auth.
                let header = Box::pin(auth.header());
                let (name, value) = match deadline {
                    Some(d) => tokio::time::timeout_at(d.instant(), header)
                        .await
                        .unwrap_or_else(|_| {
                            Err(Error::new(Kind::DeadlineExceeded).with_message(
                                "the token provider did not answer within the request's deadline",
                            ))
                        }),
                    None => header.await,
                }
                .map_err(|e| e.with_url(Some(url.clone())))?;
                req_headers.insert(name, value.clone());
                used_token = Some(value);
            }
            // Kept to send the body again (a redirect that keeps it, a 401's
            // replay); whether it still can is asked after the response.
            let replay = body.try_clone().ok();
            let mut req = http::Request::new(body);
            *req.method_mut() = method.clone();
            // The parsed URL travels with the URI, so the reqwest transport
            // does not parse it again on each attempt.
            if !inner.custom_transport {
                req.extensions_mut()
                    .insert(palisade_reqwest::ParsedUrl::new(uri.clone(), url.clone()));
            }
            *req.uri_mut() = uri;
            *req.headers_mut() = req_headers;
            {
                use palisade_core::overrides as o;
                let ext = req.extensions_mut();
                if let Some(d) = deadline {
                    ext.insert(d);
                }
                if let Some(d) = overrides.attempt_timeout {
                    ext.insert(o::AttemptTimeout(d));
                }
                if let Some(d) = overrides.deadline {
                    ext.insert(o::TotalTimeout(d));
                }
                if let Some(n) = overrides.retries {
                    ext.insert(o::MaxRetries(n));
                }
            }

            let res = self
                .route(url)
                .send(req, &inner.shutdown)
                .await
                .map_err(|e: BoxError| Error::from_stack(e).with_url(Some(url.clone())))?;

            if res.status() == StatusCode::UNAUTHORIZED
                && !refreshed
                && let (Some(auth), Some(token)) = (inner.auth.as_ref(), used_token.as_ref())
                && auth.can_refresh()
            {
                // The rejected token is forgotten either way, so the next
                // request fetches a fresh one.
                auth.invalidate(token);
                refreshed = true;
                match replay.filter(Body::is_replayable) {
                    Some(again) => {
                        body = again;
                        continue;
                    }
                    None => {
                        tracing::warn!(
                            target: "palisade",
                            url = %crate::redact::url(url),
                            "401 not replayed after the token refresh: the request body was \
                             streamed past its replay cap and cannot be sent again"
                        );
                        return Ok((res, redirected));
                    }
                }
            }

            if res.status().is_redirection()
                && inner.max_redirects > 0
                && let Some(next) = redirect_target(url, res.headers())
            {
                if redirects >= inner.max_redirects {
                    return Err(Error::new(Kind::Transport)
                        .with_message(format!(
                            "too many redirects (more than {})",
                            inner.max_redirects
                        ))
                        .with_url(Some(url.clone())));
                }
                let (next_method, keep_body) = redirect_method(res.status(), &method);
                if keep_body {
                    match replay.filter(Body::is_replayable) {
                        Some(again) => body = again,
                        None => {
                            tracing::debug!(
                                target: "palisade",
                                url = %crate::redact::url(url),
                                status = res.status().as_u16(),
                                "redirect not followed: the request body cannot be sent again"
                            );
                            return Ok((res, redirected));
                        }
                    }
                } else {
                    body = Body::empty();
                    for h in [
                        CONTENT_TYPE,
                        CONTENT_LENGTH,
                        CONTENT_ENCODING,
                        CONTENT_LANGUAGE,
                        CONTENT_LOCATION,
                    ] {
                        headers.remove(h);
                    }
                }
                method = next_method;
                redirects += 1;
                redirected = Some(next);
                continue;
            }
            return Ok((res, redirected));
        }
    }
}

/// The deadline a logical request starts with: its own override, else its
/// stack's; `None` when neither sets one. Saturates far in the future for
/// `Duration::MAX`.
pub(crate) fn entry_deadline(own: Option<Duration>, stack: Option<Duration>) -> Option<Deadline> {
    own.or(stack).map(Deadline::after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_follow_the_fetch_standard() {
        use StatusCode as S;
        assert_eq!(
            redirect_method(S::SEE_OTHER, &Method::PUT),
            (Method::GET, false)
        );
        assert_eq!(
            redirect_method(S::SEE_OTHER, &Method::HEAD),
            (Method::HEAD, true)
        );
        assert_eq!(
            redirect_method(S::FOUND, &Method::POST),
            (Method::GET, false)
        );
        assert_eq!(
            redirect_method(S::MOVED_PERMANENTLY, &Method::POST),
            (Method::GET, false)
        );
        assert_eq!(redirect_method(S::FOUND, &Method::PUT), (Method::PUT, true));
        assert_eq!(
            redirect_method(S::MOVED_PERMANENTLY, &Method::DELETE),
            (Method::DELETE, true)
        );
        assert_eq!(
            redirect_method(S::TEMPORARY_REDIRECT, &Method::POST),
            (Method::POST, true)
        );
        assert_eq!(
            redirect_method(S::PERMANENT_REDIRECT, &Method::PATCH),
            (Method::PATCH, true)
        );
    }

    #[test]
    fn origins_compare_scheme_host_and_default_port() {
        let u = |s: &str| reqwest::Url::parse(s).unwrap();
        assert!(same_origin(
            &u("https://a.example/x"),
            &u("https://A.example:443/y")
        ));
        assert!(!same_origin(
            &u("https://a.example/"),
            &u("http://a.example/")
        ));
        assert!(!same_origin(
            &u("https://a.example/"),
            &u("https://a.example:8443/")
        ));
        assert!(!same_origin(
            &u("https://a.example/"),
            &u("https://b.example/")
        ));
    }
}
