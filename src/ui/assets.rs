//! The UI's files, compiled into the binary from `assets/`, served with their content
//! type, an ETag (so a browser revalidates instead of downloading again) and headers
//! that keep every page on this origin.

use std::sync::LazyLock;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// Only this origin's scripts, styles, images and connections; no inline script, no
/// framing, no plugins, forms only to this origin. Style attributes are refused too:
/// the pages style through their sheet and script.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Revalidate every time: after an upgrade the browser must not run an old script
/// against the new server; the ETag keeps revalidation to a 304.
const CACHE_CONTROL: &str = "no-cache";

/// A file of the UI.
struct Asset {
    /// Its name under `/assets/` (`index.html` is served at `/`).
    name: &'static str,
    /// Its `Content-Type`.
    content_type: &'static str,
    /// Its bytes.
    body: &'static [u8],
}

/// Declares the embedded files: name, content type.
macro_rules! assets {
    ($(($name:literal, $type:expr)),* $(,)?) => {
        [$(Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/", $name)),
        }),*]
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file the UI has.
static ASSETS: [Asset; 11] = assets![
    ("index.html", "text/html; charset=utf-8"),
    ("style.css", "text/css; charset=utf-8"),
    ("icon.svg", "image/svg+xml"),
    ("app.js", JS),
    ("api.js", JS),
    ("dom.js", JS),
    ("sources.js", JS),
    ("connector.js", JS),
    ("wizard.js", JS),
    ("explorer.js", JS),
    ("webhooks.js", JS),
];

/// The ETag of each asset, in [`ASSETS`] order: a hash of its bytes, computed once.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|asset| {
            let hash = Sha256::digest(asset.body);
            let tag = format!("\"{}\"", hex::encode(&hash[..12]));
            HeaderValue::from_str(&tag).unwrap_or(HeaderValue::from_static("\"\""))
        })
        .collect()
});

/// The response to a request for the asset `name`: the file, a 304 when the browser's
/// copy is current, or a 404 page.
pub fn serve(name: &str, request: &HeaderMap) -> Response {
    let found = ASSETS
        .iter()
        .zip(ETAGS.iter())
        .find(|(asset, _)| asset.name == name);
    let mut response = match found {
        Some((_, etag)) if request.get(header::IF_NONE_MATCH) == Some(etag) => {
            (StatusCode::NOT_MODIFIED, [(header::ETAG, etag.clone())]).into_response()
        }
        Some((asset, etag)) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(asset.content_type),
                ),
                (header::ETAG, etag.clone()),
            ],
            asset.body,
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "no such file in the web UI\n",
        )
            .into_response(),
    };
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::CACHE_CONTROL, CACHE_CONTROL),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_served_with_its_type_and_the_policy() {
        for asset in &ASSETS {
            let response = serve(asset.name, &HeaderMap::new());
            assert_eq!(response.status(), StatusCode::OK, "{}", asset.name);
            let headers = response.headers();
            assert_eq!(headers[header::CONTENT_TYPE], asset.content_type);
            assert!(headers[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .expect("ascii")
                .starts_with("default-src 'self'"));
            let mut again = HeaderMap::new();
            again.insert(header::IF_NONE_MATCH, headers[header::ETAG].clone());
            assert_eq!(serve(asset.name, &again).status(), StatusCode::NOT_MODIFIED);
        }
        assert_eq!(
            serve("../Cargo.toml", &HeaderMap::new()).status(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn pages_load_no_inline_script_and_nothing_from_elsewhere() {
        let html = std::str::from_utf8(ASSETS[0].body).expect("utf-8");
        assert!(!html.contains("<script>"), "no inline script");
        assert!(!html.contains("http://") && !html.contains("https://"));
        assert!(!html.contains(" style="), "no inline style");
    }
}
