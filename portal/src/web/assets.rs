//! The static assets (stylesheets, scripts, fonts, the icon sprite), read once at start, each under a
//! name that carries a hash of its content (`/static/css/sportello.3fa9c2d1.css`), so browsers keep
//! them for a year and a new release is fetched at once. Text assets are compressed at start with
//! brotli and gzip and sent in whichever the browser accepts. Templates name an asset by its plain
//! path with `asset(path="css/sportello.css")`.
//!
//! What is served: `static/css/`, `static/js/` and `static/img/` (Sportello's own), Bootstrap Italia's stylesheet as
//! trimmed by `static/build.mjs` (`static/dist/`), its fonts, and its icon sprite cut down to the
//! icons the templates use.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use actix_web::http::header::{self, HeaderValue};
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};

/// One asset, as sent (the bodies are shared, not copied, by every response).
struct Asset {
    content_type: &'static str,
    etag: String,
    identity: Bytes,
    gzip: Option<Bytes>,
    brotli: Option<Bytes>,
}

/// Every asset by the path after `/static/`, under its hashed name (cached for a year: `true`) and
/// its plain one; and the plain path → hashed URL table the templates use.
#[derive(Clone, Default)]
pub struct Assets {
    files: Arc<HashMap<String, (Arc<Asset>, bool)>>,
    urls: Arc<HashMap<String, String>>,
}

#[derive(Debug, thiserror::Error)]
#[error("static asset {path}: {reason}")]
pub struct AssetError {
    path: String,
    reason: String,
}

/// The Bootstrap Italia files the pages use, relative to `static/node_modules/bootstrap-italia/dist`.
const BOOTSTRAP_FONTS: &str = "fonts";
const SPRITE: &str = "svg/sprites.svg";

impl Assets {
    /// Reads the assets under `static_dir`; `templates` are the texts that name icons (the
    /// templates' sources, icon names kept in code): the sprite keeps those.
    pub fn load<'a>(
        static_dir: &Path,
        templates: impl Iterator<Item = &'a str>,
    ) -> Result<Assets, AssetError> {
        let mut sources: Vec<(String, Vec<u8>)> = Vec::new();
        for dir in ["css", "js", "img"] {
            for (rel, bytes) in read_tree(&static_dir.join(dir))? {
                sources.push((format!("{dir}/{rel}"), bytes));
            }
        }
        let trimmed = static_dir.join("dist/bootstrap-italia.css");
        sources.push((
            "bootstrap-italia/css/bootstrap-italia.css".into(),
            std::fs::read(&trimmed).map_err(|e| AssetError {
                path: trimmed.display().to_string(),
                reason: format!("{e} (run .ci/setup: it builds the trimmed stylesheet)"),
            })?,
        ));
        let bootstrap = static_dir.join("node_modules/bootstrap-italia/dist");
        for (rel, bytes) in read_tree(&bootstrap.join(BOOTSTRAP_FONTS))? {
            if rel.ends_with(".woff2") {
                sources.push((format!("bootstrap-italia/{BOOTSTRAP_FONTS}/{rel}"), bytes));
            }
        }
        let sprite_path = bootstrap.join(SPRITE);
        let sprite = std::fs::read_to_string(&sprite_path).map_err(|e| AssetError {
            path: sprite_path.display().to_string(),
            reason: e.to_string(),
        })?;
        sources.push((
            format!("bootstrap-italia/{SPRITE}"),
            used_icons(&sprite, templates)?.into_bytes(),
        ));

        // Names first (a stylesheet's url() points at the fonts' hashed names), stylesheets last.
        let mut urls = HashMap::new();
        for (path, bytes) in sources.iter().filter(|(p, _)| !p.ends_with(".css")) {
            urls.insert(path.clone(), hashed_url(path, bytes));
        }
        let mut files = HashMap::new();
        for (path, bytes) in sources {
            let bytes = if path.ends_with(".css") {
                rewrite_urls(&path, &String::from_utf8_lossy(&bytes), &urls)?.into_bytes()
            } else {
                bytes
            };
            let url = hashed_url(&path, &bytes);
            urls.insert(path.clone(), url.clone());
            // Fonts are compressed already.
            let (gzip, brotli) = if path.ends_with(".woff2") {
                (None, None)
            } else {
                let failed = |e: std::io::Error| AssetError {
                    path: path.clone(),
                    reason: format!("compressing: {e}"),
                };
                (
                    Some(Bytes::from(gzip(&bytes).map_err(failed)?)),
                    Some(Bytes::from(brotli(&bytes).map_err(failed)?)),
                )
            };
            let asset = Arc::new(Asset {
                content_type: content_type(&path),
                etag: format!("\"{}\"", &hash(&bytes)),
                gzip,
                brotli,
                identity: Bytes::from(bytes),
            });
            files.insert(
                url.trim_start_matches("/static/").to_string(),
                (asset.clone(), true),
            );
            files.insert(path, (asset, false));
        }
        Ok(Assets {
            files: Arc::new(files),
            urls: Arc::new(urls),
        })
    }

    /// The URL of the asset at `path` (e.g. `css/sportello.css`), with its content's hash.
    pub fn url(&self, path: &str) -> Option<&str> {
        self.urls.get(path).map(String::as_str)
    }

    /// The template function `asset(path=…)`.
    pub fn tera_function(&self) -> impl tera::Function {
        let urls = self.urls.clone();
        move |args: &HashMap<String, tera::Value>| -> tera::Result<tera::Value> {
            let path = args
                .get("path")
                .and_then(|v| v.as_str())
                .ok_or_else(|| tera::Error::msg("asset(path=…) needs a path"))?;
            urls.get(path)
                .map(|u| tera::Value::String(u.clone()))
                .ok_or_else(|| tera::Error::msg(format!("no static asset {path}")))
        }
    }
}

/// `GET /static/{path}`.
pub async fn serve(req: HttpRequest, assets: web::Data<Assets>) -> HttpResponse {
    let path = req.match_info().query("path");
    let Some((asset, immutable)) = assets.files.get(path) else {
        return HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("Risorsa non trovata.");
    };
    let cache = if *immutable {
        "public, max-age=31536000, immutable"
    } else {
        "public, max-age=300"
    };
    let mut res = HttpResponse::Ok();
    res.insert_header((header::CACHE_CONTROL, cache))
        .insert_header((header::ETAG, asset.etag.as_str()))
        .insert_header((header::VARY, "Accept-Encoding"));
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == asset.etag));
    if fresh {
        return HttpResponse::NotModified()
            .insert_header((header::CACHE_CONTROL, cache))
            .insert_header((header::ETAG, asset.etag.as_str()))
            .finish();
    }
    let accepts = |coding: &str| {
        req.headers()
            .get_all(header::ACCEPT_ENCODING)
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|c| {
                let mut parts = c.split(';');
                let name = parts.next().unwrap_or_default().trim();
                let refused = parts.any(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .and_then(|q| q.trim().parse::<f32>().ok())
                        == Some(0.0)
                });
                name.eq_ignore_ascii_case(coding) && !refused
            })
    };
    let (body, coding) = match (&asset.brotli, &asset.gzip) {
        (Some(br), _) if accepts("br") => (br.clone(), "br"),
        (_, Some(gz)) if accepts("gzip") => (gz.clone(), "gzip"),
        _ => (asset.identity.clone(), "identity"),
    };
    res.insert_header((header::CONTENT_ENCODING, HeaderValue::from_static(coding)))
        .content_type(asset.content_type)
        .body(body)
}

fn read_tree(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, AssetError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    let error = |p: &Path, e: std::io::Error| AssetError {
        path: p.display().to_string(),
        reason: format!("{e} (run .ci/setup)"),
    };
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| error(&d, e))? {
            let path = entry.map_err(|e| error(&d, e))?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((rel, std::fs::read(&path).map_err(|e| error(&path, e))?));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn hash(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .take(5)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `css/sportello.css` → `/static/css/sportello.<hash>.css`.
fn hashed_url(path: &str, bytes: &[u8]) -> String {
    let hash = hash(bytes);
    match path.rsplit_once('.') {
        Some((stem, ext)) if !stem.ends_with('/') => format!("/static/{stem}.{hash}.{ext}"),
        _ => format!("/static/{path}.{hash}"),
    }
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, e)| e) {
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("woff2") => "font/woff2",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// A stylesheet's relative `url(…)`s that name another asset, pointed at its hashed URL.
fn rewrite_urls(
    css_path: &str,
    css: &str,
    urls: &HashMap<String, String>,
) -> Result<String, AssetError> {
    let re = pattern(r#"url\(\s*(["']?)([^"')]+)(["']?)\s*\)"#)?;
    let base: Vec<&str> = css_path.split('/').collect();
    let base = &base[..base.len() - 1];
    Ok(re
        .replace_all(css, |c: &regex::Captures| {
            let target = &c[2];
            if target.starts_with("data:") || target.starts_with('/') || target.contains("://") {
                return c[0].to_string();
            }
            let (file, fragment) = match target.split_once(['#', '?']) {
                Some((f, _)) => (f, &target[f.len()..]),
                None => (target, ""),
            };
            let mut parts: Vec<&str> = base.to_vec();
            for seg in file.split('/') {
                match seg {
                    ".." => {
                        parts.pop();
                    }
                    "." | "" => {}
                    s => parts.push(s),
                }
            }
            match urls.get(&parts.join("/")) {
                Some(url) => format!("url(\"{url}{fragment}\")"),
                None => c[0].to_string(),
            }
        })
        .into_owned())
}

/// The sprite with only the `<symbol>`s named in `sources` (any `it-…` word: templates, icon names).
fn used_icons<'a>(
    sprite: &str,
    templates: impl Iterator<Item = &'a str>,
) -> Result<String, AssetError> {
    let used: std::collections::HashSet<String> = {
        let re = pattern(r"\b(it-[a-z0-9-]+)")?;
        templates
            .flat_map(|t| {
                re.captures_iter(t)
                    .map(|c| c[1].to_string())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let symbol = pattern(r#"(?s)<symbol\b[^>]*\bid="([^"]+)"[^>]*>.*?</symbol>"#)?;
    let Some(first) = sprite.find("<symbol") else {
        return Ok(sprite.to_string());
    };
    let end = sprite.rfind("</svg>").unwrap_or(sprite.len());
    let mut out = sprite[..first].to_string();
    for c in symbol.captures_iter(sprite) {
        if used.contains(&c[1]) {
            out.push_str(&c[0]);
        }
    }
    out.push_str(&sprite[end..]);
    Ok(out)
}

fn pattern(source: &str) -> Result<regex::Regex, AssetError> {
    regex::Regex::new(source).map_err(|e| AssetError {
        path: source.to_string(),
        reason: e.to_string(),
    })
}

fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes)?;
    enc.finish()
}

fn brotli(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let params = brotli::enc::BrotliEncoderParams {
        quality: 11,
        ..Default::default()
    };
    brotli::BrotliCompress(&mut &bytes[..], &mut out, &params)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stylesheet_points_at_the_fonts_hashed_names() {
        let urls = HashMap::from([(
            "bootstrap-italia/fonts/T/t.woff2".to_string(),
            "/static/bootstrap-italia/fonts/T/t.abc.woff2".to_string(),
        )]);
        let css = r#"a{src:url("../bootstrap-italia/fonts/T/t.woff2") format("woff2")}b{background:url(data:image/png;base64,AA)}c{x:url(../missing.png)}"#;
        let out = rewrite_urls("css/sportello.css", css, &urls).unwrap();
        assert!(
            out.contains(r#"url("/static/bootstrap-italia/fonts/T/t.abc.woff2")"#),
            "{out}"
        );
        assert!(out.contains("url(data:image/png;base64,AA)"));
        assert!(out.contains("url(../missing.png)"));
    }

    #[test]
    fn the_sprite_keeps_only_the_icons_used() {
        let sprite = r#"<svg xmlns="http://www.w3.org/2000/svg"><symbol id="it-user" viewBox="0 0 1 1"><path d="a"/></symbol><symbol id="it-pa"><path d="b"/></symbol><symbol id="it-x"><path d="c"/></symbol></svg>"#;
        let out = used_icons(
            sprite,
            [
                "<use href=\"/static/x/sprites.svg#it-user\">",
                "sprites.svg#it-pa",
            ]
            .into_iter(),
        )
        .unwrap();
        assert!(out.contains("id=\"it-user\"") && out.contains("id=\"it-pa\""));
        assert!(!out.contains("it-x"));
        assert!(out.ends_with("</svg>"));
    }

    #[test]
    fn hashed_names_keep_the_extension() {
        assert_eq!(
            hashed_url("css/a.css", b"x"),
            format!("/static/css/a.{}.css", hash(b"x"))
        );
    }
}
