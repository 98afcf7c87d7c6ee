//! `cairn audit verify` and `cairn audit export`: check the audit log's hash chain and
//! write it out as JSON lines for a SIEM.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use cairn_core::audit::{ChainBreak, StoredAuditEvent, Verifier};
use cairn_core::auth::AuthStore;
use clap::{Args, Subcommand};

use crate::{open_store, BackendUri, ServerArgs, ServerConfig};

/// Events read per query.
const PAGE: i64 = 10_000;

/// `cairn audit` subcommands.
#[derive(Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

/// What to do with the audit log.
#[derive(Subcommand)]
pub enum AuditCommand {
    /// Recompute the hash chain; name the first edited, deleted or reordered event and
    /// exit 1 if there is one.
    Verify(StoreArgs),
    /// Write the events as JSON lines (one object per event, in order).
    Export(ExportArgs),
}

/// The store, exactly as given to `cairn server`.
#[derive(Args)]
pub struct StoreArgs {
    #[command(flatten)]
    pub server: ServerArgs,
}

/// `cairn audit export` options.
#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Write here instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Only events after this sequence number (for incremental shipping).
    #[arg(long, default_value_t = 0)]
    pub after: i64,
}

/// The result of a verification.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every event checked out.
    Intact {
        events: u64,
        head: Option<(i64, String)>,
    },
    /// The first break.
    Broken { checked: u64, at: ChainBreak },
}

/// Walks the whole log in order, page by page.
pub async fn verify(store: &dyn AuthStore) -> anyhow::Result<Verdict> {
    let mut verifier = Verifier::new();
    let mut after = 0;
    let mut head = None;
    loop {
        let page = store.audit_events(after, PAGE).await?;
        for e in &page {
            if let Err(at) = verifier.push(e) {
                return Ok(Verdict::Broken {
                    checked: verifier.checked(),
                    at,
                });
            }
            head = Some((e.seq, e.hash.clone()));
        }
        match page.last() {
            Some(last) if page.len() as i64 == PAGE => after = last.seq,
            _ => break,
        }
    }
    Ok(Verdict::Intact {
        events: verifier.checked(),
        head,
    })
}

/// Writes events after `after` to `out`, one JSON object per line; returns how many.
pub async fn export(store: &dyn AuthStore, after: i64, out: &mut dyn Write) -> anyhow::Result<u64> {
    let mut after = after;
    let mut written = 0;
    loop {
        let page: Vec<StoredAuditEvent> = store.audit_events(after, PAGE).await?;
        for e in &page {
            serde_json::to_writer(&mut *out, &cairn_http::audit_json(e))?;
            out.write_all(b"\n")?;
            written += 1;
        }
        match page.last() {
            Some(last) if page.len() as i64 == PAGE => after = last.seq,
            _ => break,
        }
    }
    out.flush()?;
    Ok(written)
}

/// Opens the store of `config`, refusing to create one: a mistyped `--data-dir` must not
/// verify as an empty, intact log.
async fn open_existing(config: &ServerConfig) -> anyhow::Result<std::sync::Arc<dyn AuthStore>> {
    if let BackendUri::Sqlite(path) = config.backend()? {
        if !path.is_file() {
            anyhow::bail!(
                "no Cairn database at {}: check --data-dir or --backend-store-uri",
                path.display()
            );
        }
    }
    let (_, _, store) = open_store(config).await?;
    Ok(store)
}

/// Runs a `cairn audit` command; `Ok(false)` means verification found a break.
pub async fn run(args: AuditArgs) -> anyhow::Result<bool> {
    match args.command {
        AuditCommand::Verify(a) => {
            let config = a.server.resolve_store_only()?;
            let store = open_existing(&config).await?;
            match verify(store.as_ref()).await? {
                Verdict::Intact { events, head } => {
                    match head {
                        Some((seq, hash)) => println!(
                            "audit log intact: {events} events verified; last event {seq}, \
                             hash {hash}"
                        ),
                        None => println!("audit log intact: no events yet"),
                    }
                    Ok(true)
                }
                Verdict::Broken { checked, at } => {
                    println!("audit log TAMPERED: {at} ({checked} events before it verified)");
                    Ok(false)
                }
            }
        }
        AuditCommand::Export(a) => {
            let config = a.server.resolve_store_only()?;
            let store = open_existing(&config).await?;
            let written = match &a.output {
                Some(path) => {
                    let file = std::fs::File::create(path)
                        .with_context(|| format!("creating {}", path.display()))?;
                    let mut out = std::io::BufWriter::new(file);
                    export(store.as_ref(), a.after, &mut out).await?
                }
                None => {
                    let stdout = std::io::stdout();
                    let mut out = stdout.lock();
                    export(store.as_ref(), a.after, &mut out).await?
                }
            };
            eprintln!("exported {written} audit events");
            Ok(true)
        }
    }
}
