//! Redis key layout.
//!
//! Every key of one palisade key shares a Redis Cluster hash tag, so a Lua
//! script that touches several of them runs on one shard:
//!
//! ```text
//! {<namespace>:<kind>:<key>}:<field>      e.g. {palisade:rl:https://api.example.com:443}:tat
//! ```
//!
//! `{`, `}` and `%` in the key are percent-encoded, so the hash tag always
//! spans the whole `<namespace>:<kind>:<key>` and different keys spread over
//! the cluster's slots.

use std::fmt::Write;

use palisade_core::Key;

/// The hash-tagged prefix for `key` of `kind` (`rl`, `br`) in `namespace`.
pub(crate) fn tag(namespace: &str, kind: &str, key: &Key) -> String {
    let key = key.to_string();
    let mut out = String::with_capacity(namespace.len() + kind.len() + key.len() + 4);
    out.push('{');
    out.push_str(namespace);
    out.push(':');
    out.push_str(kind);
    out.push(':');
    for c in key.chars() {
        match c {
            '{' | '}' | '%' => {
                let _ = write!(out, "%{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('}');
    out
}

/// The hash tag Redis Cluster would hash for `key`: the text between the
/// first `{` and the next `}`, when non-empty; otherwise the whole key.
#[cfg(test)]
pub(crate) fn cluster_hash_tag(key: &str) -> &str {
    if let Some(open) = key.find('{')
        && let Some(len) = key[open + 1..].find('}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_namespaced_and_share_one_hash_tag() {
        let key = Key::origin(&"https://API.example.com/x".parse().unwrap());
        let t = tag("palisade", "rl", &key);
        assert_eq!(t, "{palisade:rl:https://api.example.com:443}");
        let tat = format!("{t}:tat");
        let pause = format!("{t}:pause");
        assert_eq!(cluster_hash_tag(&tat), cluster_hash_tag(&pause));
        assert_eq!(
            cluster_hash_tag(&tat),
            "palisade:rl:https://api.example.com:443"
        );
    }

    #[test]
    fn braces_in_custom_keys_cannot_cut_the_hash_tag_short() {
        let a = tag("ns", "rl", &Key::from("tenant}a"));
        let b = tag("ns", "rl", &Key::from("tenant}b"));
        assert_eq!(a, "{ns:rl:tenant%7Da}");
        // Without escaping both would hash on "ns:rl:tenant" and share a slot.
        assert_ne!(
            cluster_hash_tag(&format!("{a}:tat")),
            cluster_hash_tag(&format!("{b}:tat"))
        );
        assert_eq!(tag("ns", "rl", &Key::from("50%{x")), "{ns:rl:50%25%7Bx}");
    }
}
