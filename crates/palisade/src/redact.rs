//! Redaction of secrets in what palisade prints.

/// The URL as text, with its query and any userinfo replaced, since both
/// commonly carry credentials (`?api_key=`, `user:pass@`).
pub(crate) fn url(url: &reqwest::Url) -> String {
    let mut out = String::with_capacity(url.as_str().len());
    out.push_str(url.scheme());
    out.push_str("://");
    if !url.username().is_empty() || url.password().is_some() {
        out.push_str("<redacted>@");
    }
    if let Some(host) = url.host_str() {
        out.push_str(host);
    }
    if let Some(port) = url.port() {
        out.push(':');
        out.push_str(&port.to_string());
    }
    out.push_str(url.path());
    if url.query().is_some() {
        out.push_str("?<redacted>");
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_and_userinfo_are_redacted() {
        let u: reqwest::Url = "https://user:pw@h.example:8443/p?k=v#f".parse().unwrap();
        assert_eq!(
            super::url(&u),
            "https://<redacted>@h.example:8443/p?<redacted>"
        );
        let u: reqwest::Url = "http://h.example/p".parse().unwrap();
        assert_eq!(super::url(&u), "http://h.example/p");
    }
}
