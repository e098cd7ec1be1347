//! Where a user's answer goes: registered redirect URIs (checked when an
//! app is registered, matched exactly when it asks), and the callback URL
//! made from one with the code and state, or with an error.

use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use url::Url;

/// Longest redirect URI, and most an app registers.
pub const MAX_URI_BYTES: usize = 2_048;
pub const MAX_URIS: usize = 10;
/// Longest decoded `redirect_template`.
const MAX_TEMPLATE_BYTES: usize = 1_024;

/// What a query value keeps unescaped (RFC 3986's unreserved characters).
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Checks a redirect URI an app registers: an absolute `https` URL, or
/// `http` to the loopback (an app on the user's own machine), without a
/// fragment or credentials.
pub fn check_registered(uri: &str) -> Result<(), String> {
    if uri.len() > MAX_URI_BYTES {
        return Err(format!(
            "a redirect URI is longer than {MAX_URI_BYTES} bytes"
        ));
    }
    // The URL parser drops tabs and newlines silently: such a URI would
    // never match what is stored.
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("a redirect URI may not contain spaces or control characters".into());
    }
    let url = Url::parse(uri).map_err(|e| format!("`{uri}` is not a URL: {e}"))?;
    let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    match url.scheme() {
        "https" if url.host_str().is_some() => {}
        "http" if loopback => {}
        _ => {
            return Err(format!(
                "`{uri}` must be an https URL (http only to localhost or 127.0.0.1)"
            ))
        }
    }
    if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(format!("`{uri}` may not have a fragment or credentials"));
    }
    Ok(())
}

/// `uri` with `pairs` added to its query.
pub fn with_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    let mut out = uri.to_string();
    let mut separator = if uri.contains('?') { '&' } else { '?' };
    if uri.ends_with('?') || uri.ends_with('&') {
        separator = '\0';
    }
    for (name, value) in pairs {
        if separator != '\0' {
            out.push(separator);
        }
        out.push_str(name);
        out.push('=');
        out.extend(utf8_percent_encode(value, QUERY_VALUE));
        separator = '&';
    }
    out
}

/// Decodes a `redirect_template` (base64 of a query or fragment template
/// with `{code}` and `{state}` placeholders, as OhMyGPT documents): it must
/// start with `?`, `&` or `#`, so that it can only add to the registered
/// URI, never change where it points.
pub fn decode_template(encoded: &str) -> Result<String, String> {
    let bytes = [&STANDARD, &URL_SAFE, &URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(encoded.trim()).ok())
        .ok_or("redirect_template is not base64")?;
    let template = String::from_utf8(bytes).map_err(|_| "redirect_template is not UTF-8")?;
    if template.len() > MAX_TEMPLATE_BYTES {
        return Err("redirect_template is too long".into());
    }
    if !template.starts_with(['?', '&', '#']) || !template.contains("{code}") {
        return Err("redirect_template must start with ?, & or # and contain {code}".into());
    }
    if template
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err("redirect_template may not contain spaces".into());
    }
    Ok(template)
}

/// The callback URL carrying `code` and `state`.
pub fn callback(uri: &str, template: Option<&str>, code: &str, state: &str) -> String {
    match template {
        Some(template) => {
            let filled = template
                .replace(
                    "{code}",
                    &utf8_percent_encode(code, QUERY_VALUE).to_string(),
                )
                .replace(
                    "{state}",
                    &utf8_percent_encode(state, QUERY_VALUE).to_string(),
                );
            match filled.strip_prefix('?') {
                Some(rest) if uri.contains('?') => format!("{uri}&{rest}"),
                _ => format!("{uri}{filled}"),
            }
        }
        None if state.is_empty() => with_query(uri, &[("code", code)]),
        None => with_query(uri, &[("code", code), ("state", state)]),
    }
}

/// The callback URL telling the app the user said no (RFC 6749 4.1.2.1).
pub fn denied(uri: &str, state: &str) -> String {
    if state.is_empty() {
        with_query(uri, &[("error", "access_denied")])
    } else {
        with_query(uri, &[("error", "access_denied"), ("state", state)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http_uris_register() {
        assert!(check_registered("https://app.example/cb?x=1").is_ok());
        assert!(check_registered("http://127.0.0.1:8123/callback").is_ok());
        assert!(check_registered("http://localhost/cb").is_ok());
        for bad in [
            "http://app.example/cb",
            "javascript:alert(1)",
            "https://app.example/cb#frag",
            "https://user:pw@app.example/cb",
            "/relative",
            "https://app.example/c\nb",
        ] {
            assert!(check_registered(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn callbacks_carry_the_code_and_the_state_encoded() {
        assert_eq!(
            callback("https://a.example/cb", None, "abc", "s t&x"),
            "https://a.example/cb?code=abc&state=s%20t%26x"
        );
        assert_eq!(
            callback("https://a.example/cb?app=1", None, "abc", ""),
            "https://a.example/cb?app=1&code=abc"
        );
        assert_eq!(
            denied("https://a.example/cb", "xyz"),
            "https://a.example/cb?error=access_denied&state=xyz"
        );
    }

    #[test]
    fn templates_add_to_the_uri_and_never_replace_it() {
        let template = decode_template(&STANDARD.encode("#/login?c={code}&s={state}")).unwrap();
        assert_eq!(
            callback("https://a.example/", Some(&template), "abc", "q"),
            "https://a.example/#/login?c=abc&s=q"
        );
        let query = decode_template(&STANDARD.encode("?token_code={code}")).unwrap();
        assert_eq!(
            callback("https://a.example/cb?x=1", Some(&query), "abc", "q"),
            "https://a.example/cb?x=1&token_code=abc"
        );
        for bad in [
            "@evil.example/{code}",
            "//evil.example?c={code}",
            "?c=1",
            "? {code}",
        ] {
            assert!(decode_template(&STANDARD.encode(bad)).is_err(), "{bad}");
        }
        assert!(decode_template("%%%").is_err());
    }
}
