//! `sportello`: the command line. Everything lives in the `portal` library; this only parses
//! arguments, loads the configuration and starts or stops things.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use portal::clock::SystemClock;
use portal::config::Config;
use portal::server::Server;
use secrecy::ExposeSecret;
use tokio::signal::unix::{signal, SignalKind};

/// Sportello: the online desk of municipal social services.
///
/// With no configuration at all it runs the embedded default: a SQLite database and local file
/// storage under ./data, the development identity provider, on http://127.0.0.1:8080.
/// Configuration comes from defaults, then the --config TOML file, then SPORTELLO_* environment
/// variables (SPORTELLO_DATABASE__URL for database.url: `__` separates nested keys).
#[derive(Debug, Parser)]
#[command(name = "sportello", version)]
struct Cli {
    /// A TOML configuration file (see the README for every key).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the web server and the background workers until Ctrl-C or SIGTERM.
    Serve,
    /// Create the database if needed, apply the migrations, and exit.
    Migrate,
    /// Check the configuration and print it, secrets redacted.
    Config,
    /// Inspects one untrusted file (run by the portal in a child process with limits): prints the
    /// verdict as JSON, writes an image's clean copy to OUTPUT.
    #[command(hide = true)]
    Intake {
        input: PathBuf,
        output: PathBuf,
        #[arg(long, default_value_t = 50)]
        max_pages: usize,
    },
    /// Reads pages by OCR for the portal (run by it, one long-lived process per engine): a byte
    /// count line then an image on stdin, one answer line per page on stdout.
    #[command(hide = true)]
    OcrWorker {
        #[arg(long, default_value = "ita")]
        language: String,
        #[arg(long)]
        forms_dir: PathBuf,
    },
    /// The SPID/CIE federation: `check` resolves the trust chain of each provider and of the
    /// portal (running at its public address), prints expiry dates and what is missing, and exits
    /// non-zero on a problem.
    Federation {
        #[command(subcommand)]
        action: FederationAction,
    },
    /// A reference CSI client: reads the event feed, prints each event, takes every new pratica in
    /// charge, acknowledges; again every few seconds (or once with --una-volta).
    CsiDemo {
        /// The portal's address.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        #[arg(long, default_value = "csi-demo")]
        client: String,
        #[arg(long, default_value = "csi-demo-secret")]
        secret: String,
        /// One pass, then exit.
        #[arg(long)]
        una_volta: bool,
        /// Through RabbitMQ (`broker.url` and `broker.prefix` of the configuration) instead of
        /// the HTTP feed.
        #[arg(long)]
        broker: bool,
    },
}

#[derive(Debug, Subcommand)]
enum FederationAction {
    /// Checks the trust chains before going live, and from monitoring.
    Check {
        /// Where the portal answers, if not `public_url` (e.g. http://127.0.0.1:8080 in development).
        #[arg(long)]
        url: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::OcrWorker {
        language,
        forms_dir,
    } = &cli.command
    {
        // No runtime, no configuration, no logging: this process only reads pages.
        return match portal::documents::ocr::worker(language, forms_dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sportello ocr-worker: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sportello: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sportello: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Intake {
        input,
        output,
        max_pages,
    } = &cli.command
    {
        // Before any configuration or logging: this process only reads one file.
        println!("{}", intake::child(input, output, *max_pages)?);
        return Ok(());
    }
    let config = Config::load(cli.config.as_deref())?;
    portal::telemetry::init_logging(&config.log);
    match cli.command {
        Command::Config => {
            println!("{config:#?}");
            Ok(())
        }
        Command::CsiDemo {
            url,
            client,
            secret,
            una_volta,
            broker,
        } => loop {
            let lines = if broker {
                let Some(broker_url) = &config.broker.url else {
                    anyhow::bail!("--broker: set broker.url (SPORTELLO_BROKER__URL)");
                };
                portal::csi::demo::broker_once(broker_url.expose_secret(), &config.broker.prefix)
                    .await
            } else {
                portal::csi::demo::run_once(&url, &client, &secret).await
            }
            .map_err(anyhow::Error::msg)?;
            for line in lines {
                println!("{line}");
            }
            if una_volta {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        },
        Command::Intake { .. } | Command::OcrWorker { .. } => Ok(()),
        Command::Federation {
            action: FederationAction::Check { url },
        } => {
            let Some(public_url) = url.or_else(|| config.public_url.clone()).or_else(|| {
                (config.mode == portal::config::Mode::Development)
                    .then(|| format!("http://{}", config.http.addr))
            }) else {
                anyhow::bail!("federation check: set public_url, or give --url");
            };
            let findings = portal::auth::federation::check::check(&config, &public_url).await;
            let problems = findings.iter().filter(|f| !f.ok).count();
            for f in &findings {
                println!("{} {}", if f.ok { "ok      " } else { "PROBLEMA" }, f.text);
            }
            if problems > 0 {
                anyhow::bail!("federation check: {problems} problem(s)");
            }
            println!("federation check: all well");
            Ok(())
        }
        Command::Migrate => {
            let db = portal::server::migrate(&config).await?;
            db.pool.close().await;
            println!("migrations applied ({:?})", db.backend);
            Ok(())
        }
        Command::Serve => {
            // Registered before anything is served, so that a signal is never missed.
            let mut interrupt = signal(SignalKind::interrupt())?;
            let mut terminate = signal(SignalKind::terminate())?;
            let server = Server::start(config, Arc::new(SystemClock)).await?;
            println!(
                "Sportello è in ascolto su {} (indirizzo pubblico {})",
                server.addr, server.public_url
            );
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            // Not println!: a supervisor that closed our stdout must not stop the clean stop.
            let _ = writeln!(std::io::stdout(), "Sportello si sta fermando…");
            server.stop().await;
            Ok(())
        }
    }
}
