//! The pages on a phone: Lighthouse (npm `lighthouse`, pinned in bench/lighthouse/, run with Debian's
//! Chromium) with its default mobile settings — a mid-range phone, simulated slow 4G — on the pages
//! a citizen meets first: the home page, a service page, a form step and the booking calendar.
//! Prints, per page, the median of `--runs` runs (3) of the performance, accessibility and
//! best-practices scores, with first and largest contentful paint, total blocking time, layout
//! shift and the bytes transferred; and any console error or failed audit that cost points.
//!
//! `cargo bench --bench pages [-- --runs 3]` (installs Lighthouse with `npm ci` when missing).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use common::{arg, citizen, start};

fn lighthouse(root: &Path) -> PathBuf {
    let dir = root.join("bench/lighthouse");
    let cli = dir.join("node_modules/lighthouse/cli/index.js");
    if !cli.exists() {
        let status = Command::new("npm")
            .args([
                "ci",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "--prefix",
            ])
            .arg(&dir)
            .status()
            .expect("npm runs");
        assert!(status.success(), "npm ci in bench/lighthouse failed");
    }
    cli
}

/// One Lighthouse run on `url` with `cookie`: its JSON report. Lighthouse itself sometimes fails to
/// record a trace ("NO_NAVSTART: run Lighthouse again"): such a run is made again, twice at most.
fn run(cli: &Path, url: &str, cookie: &str, out: &Path) -> Value {
    for attempt in 1..=3 {
        if let Some(report) = run_once(cli, url, cookie, out) {
            return report;
        }
        eprintln!("Lighthouse failed on {url} (attempt {attempt}): running it again");
    }
    panic!("Lighthouse failed three times on {url}");
}

fn run_once(cli: &Path, url: &str, cookie: &str, out: &Path) -> Option<Value> {
    let headers = serde_json::json!({ "Cookie": cookie }).to_string();
    let status = Command::new("node")
        .arg(cli)
        .arg(url)
        .args([
            "--only-categories=performance,accessibility,best-practices",
            "--output=json",
            "--quiet",
            "--chrome-flags=--headless=new --no-sandbox --disable-gpu",
        ])
        .arg(format!("--extra-headers={headers}"))
        .arg(format!("--output-path={}", out.display()))
        .env("CHROME_PATH", "/usr/bin/chromium")
        .status()
        .expect("node runs Lighthouse");
    if !status.success() {
        return None;
    }
    serde_json::from_slice(&std::fs::read(out).ok()?).ok()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let runs: usize = arg("runs", 3);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let cli = lighthouse(&root);
    let dir = tempfile::tempdir().unwrap();
    let (server, base, backend) = start(dir.path()).await;
    let now = portal::clock::Clock::now_ms(&portal::clock::SystemClock);
    let session = citizen(&server.db, now, 1).await;
    let draft = portal::applications::store::create_draft(
        &server.db,
        now,
        &portal::applications::store::NewDraft {
            ente_code: "valleverde",
            service_code: "sad",
            form_version: 1,
            applicant_cf: &session.cf,
            answers: &portal::applications::form::Answers::new(),
        },
    )
    .await
    .unwrap();
    let cookie = format!("sportello_session={}", session.token);
    let pages = [
        ("home", "/".to_string()),
        ("service page", "/servizi/sad".to_string()),
        ("form step", format!("/domande/{draft}/passo/1")),
        (
            "booking calendar",
            "/appuntamenti/prenota/vv-borgo".to_string(),
        ),
    ];
    println!(
        "Lighthouse 12 (mobile, simulated slow 4G), {backend}, median of {runs} runs per page"
    );
    println!(
        "| page | performance | accessibility | best practices | FCP | LCP | TBT | CLS | bytes |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut notes = Vec::new();
    for (name, path) in &pages {
        let mut scores: [Vec<f64>; 3] = Default::default();
        let mut metrics: [Vec<f64>; 5] = Default::default();
        for i in 0..runs {
            let report = run(
                &cli,
                &format!("{base}{path}"),
                &cookie,
                &dir.path().join(format!("lh-{i}.json")),
            );
            let final_url = report["finalDisplayedUrl"].as_str().unwrap_or_default();
            assert!(
                final_url.ends_with(path.as_str()),
                "{name}: Lighthouse ended on {final_url}, not the page"
            );
            for (k, cat) in ["performance", "accessibility", "best-practices"]
                .iter()
                .enumerate()
            {
                scores[k].push(report["categories"][cat]["score"].as_f64().unwrap_or(0.0));
            }
            for (k, audit) in [
                "first-contentful-paint",
                "largest-contentful-paint",
                "total-blocking-time",
                "cumulative-layout-shift",
                "total-byte-weight",
            ]
            .iter()
            .enumerate()
            {
                metrics[k].push(
                    report["audits"][audit]["numericValue"]
                        .as_f64()
                        .unwrap_or(0.0),
                );
            }
            if i == 0 {
                for (id, audit) in report["audits"].as_object().into_iter().flatten() {
                    let score = audit["score"].as_f64();
                    let mode = audit["scoreDisplayMode"].as_str().unwrap_or_default();
                    if mode == "binary" && score == Some(0.0) {
                        notes.push(format!(
                            "{name}: {id} — {}",
                            audit["title"].as_str().unwrap_or_default()
                        ));
                    }
                }
                for item in report["audits"]["errors-in-console"]["details"]["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    notes.push(format!("{name}: console — {}", item["description"]));
                }
            }
        }
        let [perf, a11y, bp] = scores.map(median);
        let [fcp, lcp, tbt, cls, bytes] = metrics.map(median);
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} | {:.1} s | {:.1} s | {:.0} ms | {:.3} | {:.0} kB |",
            perf * 100.0,
            a11y * 100.0,
            bp * 100.0,
            fcp / 1000.0,
            lcp / 1000.0,
            tbt,
            cls,
            bytes / 1024.0
        );
    }
    if !notes.is_empty() {
        println!("\nFailed audits (first run of each page):");
        for n in notes {
            println!("- {n}");
        }
    }
    server.stop().await;
}
