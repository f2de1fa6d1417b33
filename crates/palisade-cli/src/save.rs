//! `--save DIR`: file names from URLs, never overwriting.

use std::io;
use std::path::{Path, PathBuf};

use tokio::fs::{File, OpenOptions};

/// The longest base name kept, in bytes, well below common file-system
/// limits (255) so that a counter suffix still fits.
const MAX_NAME: usize = 200;

/// A safe file name for the body of `url`: its last non-empty path segment,
/// or its host when the path is empty, with every character outside
/// `[A-Za-z0-9._-]` replaced by `_` and leading dots removed, so a name can
/// neither leave the directory nor hide itself.
pub(crate) fn base_name(url: &str) -> String {
    let parsed = reqwest::Url::parse(url).ok();
    let raw = parsed
        .as_ref()
        .and_then(|u| {
            u.path_segments()
                .and_then(|mut s| s.rfind(|seg| !seg.is_empty()).map(str::to_owned))
                .or_else(|| u.host_str().map(str::to_owned))
        })
        .unwrap_or_default();
    let mut name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    name = name.trim_start_matches('.').to_owned();
    name.truncate(MAX_NAME);
    if name.is_empty() {
        name = "index".to_owned();
    }
    name
}

/// `name` with `n` inserted before its extension: `a.json` → `a.1.json`.
fn numbered(name: &str, n: u32) -> String {
    match name.rfind('.') {
        Some(dot) if dot > 0 => format!("{}.{n}{}", &name[..dot], &name[dot..]),
        _ => format!("{name}.{n}"),
    }
}

/// Creates a new file for `url` in `dir`: `name`, else `name.1`, `name.2`…
/// Creation is exclusive (`O_EXCL`), so two concurrent responses never
/// share a file, and an existing file is never touched.
pub(crate) async fn create(dir: &Path, url: &str) -> io::Result<(PathBuf, File)> {
    let base = base_name(url);
    for n in 0..10_000u32 {
        let name = if n == 0 {
            base.clone()
        } else {
            numbered(&base, n)
        };
        let path = dir.join(name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
        {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("10000 files named after {base} already exist"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_last_segment_or_the_host() {
        assert_eq!(base_name("https://example.com/a/b.json?x=1"), "b.json");
        assert_eq!(base_name("https://example.com/docs/"), "docs");
        assert_eq!(base_name("https://example.com/"), "example.com");
        assert_eq!(base_name("http://127.0.0.1:8080"), "127.0.0.1");
        // The URL parser resolves an encoded `..` itself.
        assert_eq!(base_name("https://example.com/%2e%2e"), "example.com");
        assert_eq!(base_name("https://example.com/..%2Fetc"), "_2Fetc");
        assert_eq!(base_name("https://example.com/a%20b"), "a_20b");
        assert_eq!(base_name("not a url"), "index");
        let long = format!("https://example.com/{}", "x".repeat(500));
        assert_eq!(base_name(&long).len(), MAX_NAME);
    }

    #[test]
    fn numbers_go_before_the_extension() {
        assert_eq!(numbered("a.json", 1), "a.1.json");
        assert_eq!(numbered("a", 2), "a.2");
        assert_eq!(numbered("archive.tar.gz", 3), "archive.tar.3.gz");
    }

    #[tokio::test]
    async fn never_overwrites() {
        let dir = std::env::temp_dir().join(format!("palisade-save-test-{}", std::process::id()));
        tokio::fs::create_dir_all(&dir).await.unwrap();
        let url = "http://example.com/data.txt";
        let (first, _) = create(&dir, url).await.unwrap();
        tokio::fs::write(&first, b"first").await.unwrap();
        let (second, _) = create(&dir, url).await.unwrap();
        assert_eq!(first.file_name().unwrap(), "data.txt");
        assert_eq!(second.file_name().unwrap(), "data.1.txt");
        assert_eq!(tokio::fs::read(&first).await.unwrap(), b"first");
        tokio::fs::remove_dir_all(&dir).await.unwrap();
    }
}
