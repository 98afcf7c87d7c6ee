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
    Verify(VerifyArgs),
    /// Write the events as JSON lines (one object per event, in order).
    Export(ExportArgs),
}

/// `cairn audit verify` options.
#[derive(Args)]
pub struct VerifyArgs {
    /// The store, exactly as given to `cairn server`.
    #[command(flatten)]
    pub server: ServerArgs,
    /// `SEQ:HASH` of an event recorded elsewhere earlier (a SIEM export, the line an
    /// earlier verify printed); repeatable. The chain hash has no secret, so someone who
    /// can write the database could rewrite history and recompute every later hash; an
    /// anchor kept outside the database catches that.
    #[arg(long = "anchor", value_name = "SEQ:HASH")]
    pub anchors: Vec<String>,
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
    /// The chain is consistent, but an event recorded outside the database has another
    /// hash now (or is gone): history was rewritten and re-hashed, or truncated.
    Rewritten {
        seq: i64,
        expected: String,
        found: Option<String>,
    },
}

/// Parses `SEQ:HASH` anchors.
pub fn parse_anchors(anchors: &[String]) -> anyhow::Result<Vec<(i64, String)>> {
    anchors
        .iter()
        .map(|a| {
            let (seq, hash) = a
                .split_once(':')
                .ok_or_else(|| anyhow::anyhow!("--anchor {a}: expected SEQ:HASH"))?;
            let seq = seq
                .parse::<i64>()
                .map_err(|_| anyhow::anyhow!("--anchor {a}: SEQ must be a number"))?;
            Ok((seq, hash.to_ascii_lowercase()))
        })
        .collect()
}

/// Walks the whole log in order, page by page, checking the chain and the anchors.
pub async fn verify(store: &dyn AuthStore, anchors: &[(i64, String)]) -> anyhow::Result<Verdict> {
    let mut verifier = Verifier::new();
    let mut after = 0;
    let mut head = None;
    let mut seen: std::collections::HashMap<i64, String> = std::collections::HashMap::new();
    loop {
        let page = store.audit_events(after, PAGE).await?;
        for e in &page {
            if let Err(at) = verifier.push(e) {
                return Ok(Verdict::Broken {
                    checked: verifier.checked(),
                    at,
                });
            }
            if anchors.iter().any(|(seq, _)| *seq == e.seq) {
                seen.insert(e.seq, e.hash.clone());
            }
            head = Some((e.seq, e.hash.clone()));
        }
        match page.last() {
            Some(last) if page.len() as i64 == PAGE => after = last.seq,
            _ => break,
        }
    }
    for (seq, expected) in anchors {
        let found = seen.get(seq);
        if found != Some(expected) {
            return Ok(Verdict::Rewritten {
                seq: *seq,
                expected: expected.clone(),
                found: found.cloned(),
            });
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
            let anchors = parse_anchors(&a.anchors)?;
            let config = a.server.resolve_store_only()?;
            let store = open_existing(&config).await?;
            match verify(store.as_ref(), &anchors).await? {
                Verdict::Intact { events, head } => {
                    match head {
                        Some((seq, hash)) => println!(
                            "audit log intact: {events} events verified; last event {seq}, \
                             hash {hash} (keep it: --anchor {seq}:{hash})"
                        ),
                        None => println!("audit log intact: no events yet"),
                    }
                    Ok(true)
                }
                Verdict::Rewritten {
                    seq,
                    expected,
                    found,
                } => {
                    match found {
                        Some(found) => println!(
                            "audit log TAMPERED: event {seq} was rewritten: its hash is {found}, \
                             the anchor recorded {expected}"
                        ),
                        None => println!(
                            "audit log TAMPERED: event {seq}, recorded with hash {expected}, is \
                             gone (the log was truncated)"
                        ),
                    }
                    Ok(false)
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
