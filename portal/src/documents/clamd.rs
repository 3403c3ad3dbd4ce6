//! The virus scan, when `documents.clamd` is set: the file is streamed to clamd with the INSTREAM
//! command (over TCP `host:port`, or a Unix socket path). Any answer other than clean — a
//! signature found, an error, no answer — refuses the file.

use std::path::Path;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const INFECTED: &str = "Il file contiene un virus o un contenuto pericoloso e non è stato accettato. Controlla il tuo dispositivo con un antivirus, poi ricarica il documento da una copia pulita.";
pub const UNAVAILABLE: &str = "Il controllo antivirus non è disponibile in questo momento, quindi il file non è stato accettato. Riprova tra qualche minuto.";

/// What clamd said of a file.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan {
    Clean,
    /// A signature found, or an error clamd reported, or no clean answer: the reason, in Italian.
    Refused(&'static str),
}

async fn instream(
    mut conn: impl AsyncRead + AsyncWrite + Unpin,
    file: &Path,
) -> std::io::Result<String> {
    conn.write_all(b"zINSTREAM\0").await?;
    let mut f = tokio::fs::File::open(file).await?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        conn.write_all(&(n as u32).to_be_bytes()).await?;
        conn.write_all(&buf[..n]).await?;
    }
    conn.write_all(&0u32.to_be_bytes()).await?;
    conn.flush().await?;
    let mut answer = Vec::new();
    conn.take(4096).read_to_end(&mut answer).await?;
    Ok(String::from_utf8_lossy(&answer)
        .trim_end_matches(['\0', '\n'])
        .to_string())
}

/// Scans `file` with the clamd at `address`.
pub async fn scan(address: &str, file: &Path) -> Scan {
    let answer = if address.starts_with('/') {
        match tokio::net::UnixStream::connect(address).await {
            Ok(c) => instream(c, file).await,
            Err(e) => Err(e),
        }
    } else {
        match tokio::net::TcpStream::connect(address).await {
            Ok(c) => instream(c, file).await,
            Err(e) => Err(e),
        }
    };
    match answer {
        Ok(a) if a == "stream: OK" => Scan::Clean,
        Ok(a) if a.ends_with("FOUND") => {
            tracing::warn!("virus scan: a signature was found");
            Scan::Refused(INFECTED)
        }
        Ok(_) => {
            tracing::warn!("virus scan: clamd answered with an error");
            Scan::Refused(UNAVAILABLE)
        }
        Err(e) => {
            tracing::warn!(error = %e, "virus scan: clamd unreachable");
            Scan::Refused(UNAVAILABLE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for clamd that speaks INSTREAM and finds the EICAR test string.
    async fn fake_clamd() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|_| unreachable!());
        let addr = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        tokio::spawn(async move {
            while let Ok((mut c, _)) = listener.accept().await {
                let mut command = [0u8; 10];
                if c.read_exact(&mut command).await.is_err() || &command != b"zINSTREAM\0" {
                    let _ = c.write_all(b"UNKNOWN COMMAND\0").await;
                    continue;
                }
                let mut data = Vec::new();
                loop {
                    let mut len = [0u8; 4];
                    if c.read_exact(&mut len).await.is_err() {
                        break;
                    }
                    let len = u32::from_be_bytes(len) as usize;
                    if len == 0 {
                        break;
                    }
                    let mut chunk = vec![0u8; len];
                    if c.read_exact(&mut chunk).await.is_err() {
                        break;
                    }
                    data.extend_from_slice(&chunk);
                }
                let found = data.windows(16).any(|w| w == b"EICAR-STANDARD-A");
                let answer: &[u8] = if found {
                    b"stream: Eicar-Test-Signature FOUND\0"
                } else {
                    b"stream: OK\0"
                };
                let _ = c.write_all(answer).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn clean_infected_and_unreachable() {
        let dir = tempfile::tempdir().unwrap_or_else(|_| unreachable!());
        let clean = dir.path().join("clean");
        let infected = dir.path().join("infected");
        std::fs::write(&clean, vec![b'a'; 200_000]).unwrap_or_default();
        std::fs::write(
            &infected,
            b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*",
        )
        .unwrap_or_default();
        let clamd = fake_clamd().await;
        assert_eq!(scan(&clamd, &clean).await, Scan::Clean);
        assert_eq!(scan(&clamd, &infected).await, Scan::Refused(INFECTED));
        assert_eq!(
            scan("127.0.0.1:1", &clean).await,
            Scan::Refused(UNAVAILABLE)
        );
    }
}
