//! Runs the inspection of one file (the `intake` crate) in a child process under limits: CPU time
//! and address space set by `prlimit` (util-linux), wall-clock time by the parent, which kills it
//! when time is up. A file that crashes, hangs or exhausts the parser fails alone, with a message
//! for the citizen; the portal carries on.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use intake::Verdict;
use tokio::io::AsyncReadExt;

use crate::config::DocumentsConfig;

pub const TOO_HEAVY: &str = "Non è stato possibile verificare il file: è troppo complesso o danneggiato. Salvalo di nuovo (o stampalo in PDF) e ricaricalo.";

/// The verdict on `input`; an image's clean copy is written to `output`.
pub async fn inspect(
    config: &DocumentsConfig,
    input: &Path,
    output: &Path,
) -> Result<Verdict, std::io::Error> {
    let program = match &config.intake_program {
        Some(p) => p.clone(),
        None => std::env::current_exe()?,
    };
    let mut child = tokio::process::Command::new("prlimit")
        .arg(format!("--cpu={}", config.inspect_cpu_seconds))
        .arg(format!("--as={}", config.inspect_memory_mb * 1024 * 1024))
        .arg("--core=0")
        .arg("--")
        .arg(program)
        .arg("intake")
        .arg(input)
        .arg(output)
        .arg(format!("--max-pages={}", config.max_pages))
        .env_clear()
        .env("OMP_THREAD_LIMIT", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| std::io::Error::other("no stdout"))?;
    let limit = Duration::from_secs(config.inspect_wall_seconds);
    let ran = tokio::time::timeout(limit, async {
        let mut out = String::new();
        stdout.read_to_string(&mut out).await?;
        let status = child.wait().await?;
        Ok::<_, std::io::Error>((status, out))
    })
    .await;
    let refused = || Verdict::Rifiutato {
        motivo: TOO_HEAVY.into(),
    };
    match ran {
        Err(_) => {
            tracing::warn!("document inspection killed: wall-clock limit");
            let _ = child.kill().await;
            Ok(refused())
        }
        Ok(Err(e)) => Err(e),
        Ok(Ok((status, out))) if status.success() => {
            Ok(serde_json::from_str(out.trim()).unwrap_or_else(|_| refused()))
        }
        Ok(Ok((status, _))) => {
            tracing::warn!(%status, "document inspection failed (crash or resource limit)");
            Ok(refused())
        }
    }
}
