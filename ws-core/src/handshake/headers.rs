//! Header value helpers: comma-separated token lists (RFC 9110 §5.6).

use http::HeaderMap;
use http::header::{
    AUTHORIZATION, COOKIE, HeaderName, PROXY_AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL, SET_COOKIE,
};

/// Headers whose values are credentials or may carry them: browsers cannot
/// set `Authorization` on a WebSocket, so tokens often travel as a
/// subprotocol.
const SENSITIVE: [HeaderName; 5] = [
    AUTHORIZATION,
    PROXY_AUTHORIZATION,
    COOKIE,
    SET_COOKIE,
    SEC_WEBSOCKET_PROTOCOL,
];

/// Whether values of `name` are marked sensitive.
pub(crate) fn is_sensitive(name: &HeaderName) -> bool {
    SENSITIVE.contains(name)
}

/// Marks the values of credential headers sensitive, so that `Debug` (and
/// so any log of a request) shows `Sensitive` instead of them.
pub(crate) fn mark_sensitive(headers: &mut HeaderMap) {
    for name in &SENSITIVE {
        if let http::header::Entry::Occupied(mut entry) = headers.entry(name) {
            for value in entry.iter_mut() {
                value.set_sensitive(true);
            }
        }
    }
}

/// Whether any value of `name` lists `token` (compared case-insensitively).
pub(crate) fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The single value of `name`, or `None` when it is absent or repeated.
pub(crate) fn single<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Option<&'a http::HeaderValue> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    values.next().is_none().then_some(first)
}

/// The elements of every `name` header, trimmed, empty elements skipped.
/// `Err` when a value is not visible ASCII or an element is not a token.
pub(crate) fn token_list(headers: &HeaderMap, name: &HeaderName) -> Result<Vec<String>, ()> {
    let mut list = Vec::new();
    for value in headers.get_all(name) {
        let value = value.to_str().map_err(|_| ())?;
        for item in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if !is_token(item) {
                return Err(());
            }
            list.push(item.to_owned());
        }
    }
    Ok(list)
}

/// An RFC 9110 token: one or more of the visible ASCII characters other
/// than delimiters.
pub(crate) fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{CONNECTION, SEC_WEBSOCKET_PROTOCOL};

    #[test]
    fn tokens_are_found_in_comma_lists_case_insensitively() {
        let mut headers = HeaderMap::new();
        headers.append(CONNECTION, "keep-alive, Upgrade".parse().unwrap());
        assert!(has_token(&headers, &CONNECTION, "upgrade"));
        assert!(!has_token(&headers, &CONNECTION, "upgrad"));
        headers.append(CONNECTION, "close".parse().unwrap());
        assert!(has_token(&headers, &CONNECTION, "close"));
        assert!(single(&headers, &CONNECTION).is_none());
    }

    #[test]
    fn token_list_rejects_non_tokens() {
        let mut headers = HeaderMap::new();
        headers.append(SEC_WEBSOCKET_PROTOCOL, "chat, , v2.json".parse().unwrap());
        assert_eq!(
            token_list(&headers, &SEC_WEBSOCKET_PROTOCOL),
            Ok(vec!["chat".into(), "v2.json".into()])
        );
        headers.append(SEC_WEBSOCKET_PROTOCOL, "bad\"quote".parse().unwrap());
        assert_eq!(token_list(&headers, &SEC_WEBSOCKET_PROTOCOL), Err(()));
    }
}
