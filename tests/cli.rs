//! The `sportello` binary: refusals that must happen before anything is served.

use std::process::Command;

/// Runs `cmd` to its end off the test's runtime: a portal served by this runtime keeps answering
/// the command meanwhile (a blocking wait would stall its database pool).
pub(crate) async fn output_of(mut cmd: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap()
}

pub(crate) fn sportello(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sportello"));
    cmd.current_dir(dir)
        .env("SPORTELLO_DATA_DIR", dir.join("data"))
        .env("SPORTELLO_HTTP__ADDR", "127.0.0.1:0");
    cmd
}

#[test]
fn an_unknown_database_scheme_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = sportello(dir.path())
        .env("SPORTELLO_DATABASE__URL", "mysql://localhost/sportello")
        .arg("serve")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("'mysql' is not supported") && stderr.contains("sqlite: or postgres:"),
        "{stderr}"
    );
}

#[test]
fn production_refuses_the_development_identity_provider() {
    let dir = tempfile::tempdir().unwrap();
    let out = sportello(dir.path())
        .env("SPORTELLO_MODE", "production")
        .env("SPORTELLO_AUTH__DEV_IDP", "true")
        .env("SPORTELLO_PUBLIC_URL", "https://sportello.example.it")
        .arg("serve")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("development identity provider"), "{stderr}");
}

#[test]
fn production_refuses_to_start_without_keys() {
    let dir = tempfile::tempdir().unwrap();
    let out = sportello(dir.path())
        .env("SPORTELLO_MODE", "production")
        .env("SPORTELLO_PUBLIC_URL", "https://sportello.example.it")
        .arg("serve")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("keys.signing_key_file"));
}

#[test]
fn unknown_configuration_keys_are_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sportello.toml"),
        "[http]\naddr = \"127.0.0.1:0\"\nport = 80\n",
    )
    .unwrap();
    let out = sportello(dir.path())
        .args(["--config", "sportello.toml", "config"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("port"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let env = sportello(dir.path())
        .env("SPORTELLO_HTTP__PORTA", "80")
        .arg("config")
        .output()
        .unwrap();
    assert!(
        !env.status.success(),
        "an unknown environment key is refused too"
    );
}

#[test]
fn secrets_are_redacted_when_the_configuration_is_printed() {
    let dir = tempfile::tempdir().unwrap();
    let out = sportello(dir.path())
        .env("SPORTELLO_DATABASE__URL", "postgres://u:hunter2@db/x")
        .arg("config")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("database") && !stdout.contains("hunter2"),
        "{stdout}"
    );
}

#[test]
fn migrate_creates_and_migrates_the_embedded_database() {
    let dir = tempfile::tempdir().unwrap();
    let out = sportello(dir.path()).arg("migrate").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("data/sportello.db").exists());
    let help = sportello(dir.path()).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        text.contains("serve") && text.contains("migrate") && text.contains("config"),
        "{text}"
    );
}

#[test]
fn serve_prints_its_address_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        crate::support::root().join("static"),
        dir.path().join("static"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        crate::support::root().join("forms"),
        dir.path().join("forms"),
    )
    .unwrap();
    let mut child = sportello(dir.path())
        .arg("serve")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut reader = std::io::BufReader::new(stdout);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
    assert!(line.contains("in ascolto su 127.0.0.1:"), "{line}");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    assert!(status.success(), "a clean stop after SIGTERM: {rest}");
    assert!(rest.contains("si sta fermando"), "{rest}");
}

#[tokio::test]
async fn federation_check_resolves_every_chain_and_exits_non_zero_on_a_problem() {
    let app = crate::support::spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    // Against the running portal in development: its anchor, the development provider and the
    // portal itself resolve.
    let mut check = sportello(dir.path());
    check.args(["federation", "check", "--url", &app.url]);
    let out = output_of(check).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "{}/dev-idp: trust chain of 3 statements, valid until",
            app.url
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{}: trust chain of 3 statements", app.url)),
        "the portal itself: {stdout}"
    );

    // A trust anchor configured with keys that are not its own: said, and a failing exit.
    let wrong = dir.path().join("wrong-anchor.json");
    let other = portal::auth::keys::NamedKey::generate().unwrap();
    std::fs::write(
        &wrong,
        serde_json::json!({ "keys": [other.public_jwk("sig", "RS256").as_ref()] }).to_string(),
    )
    .unwrap();
    let config = dir.path().join("sportello.toml");
    std::fs::write(
        &config,
        format!(
            "[[federation.trust_anchors]]\nentity_id = \"{}/dev-ta\"\njwks_file = \"{}\"\n",
            app.url,
            wrong.display()
        ),
    )
    .unwrap();
    let mut check = sportello(dir.path());
    check.args(["--config", config.to_str().unwrap()]).args([
        "federation",
        "check",
        "--url",
        &app.url,
    ]);
    let out = output_of(check).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("PROBLEMA trust anchor") && stdout.contains("/dev-ta"),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("problem(s)"));
    app.stop().await;
}
