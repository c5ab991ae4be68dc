//! Test data shared by the interop testee and the echo benchmark: text
//! that compresses like a feed of JSON events (the interop scripts in
//! `interop/` generate the same).

/// `n` bytes of JSON-like events.
pub fn events(n: usize) -> String {
    let mut out = String::with_capacity(n + 80);
    let mut i = 0u32;
    while out.len() < n {
        out.push_str(&format!(
            r#"{{"seq":{i},"topic":"sensors/{}","value":{},"ok":true}}"#,
            i % 13,
            i * 7 % 1000
        ));
        i += 1;
    }
    out.truncate(n);
    out
}
