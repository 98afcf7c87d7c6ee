//! `cairn gc`: the command-line side of permanent deletion (see `cairn_artifacts::gc`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use cairn_artifacts::gc::{self, GcKind, GcReport};
use cairn_artifacts::{ArtifactRepo, ArtifactService};
use cairn_core::store::GcQuery;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::{open_store, ServerArgs, ServerConfig};

/// `cairn gc` options: the server's store and artifact settings plus what to collect.
#[derive(Clone, Default, Args)]
pub struct GcArgs {
    /// Store and artifact settings, exactly as given to `cairn server`.
    #[command(flatten)]
    pub server: ServerArgs,
    /// Only entities deleted at least this long ago, e.g. `30d`, `12h`, `1d 2h`
    /// [default: every deleted entity].
    #[arg(long)]
    pub older_than: Option<String>,
    /// Only these experiments (comma-separated ids), with their runs and logged models.
    #[arg(long, value_delimiter = ',')]
    pub experiment_ids: Vec<String>,
    /// Only these runs (comma-separated ids); no experiment or logged model is purged.
    #[arg(long, value_delimiter = ',')]
    pub run_ids: Vec<String>,
    /// Report what would be purged, and how many artifact files, without deleting.
    #[arg(long)]
    pub dry_run: bool,
}

/// What one gc run is asked to do, resolved from [`GcArgs`].
#[derive(Debug, Clone, Default)]
pub struct GcOptions {
    /// Which deleted entities.
    pub query: GcQuery,
    /// Measure only.
    pub dry_run: bool,
    /// Draw a progress bar on stderr (hidden when stderr is not a terminal).
    pub progress: bool,
}

impl GcArgs {
    /// Resolves the settings and the selection.
    pub fn resolve(self) -> anyhow::Result<(ServerConfig, GcOptions)> {
        let config = self.server.resolve()?;
        let deleted_before = match self.older_than.as_deref() {
            None => None,
            Some(text) => {
                let age = humantime::parse_duration(text)
                    .with_context(|| format!("--older-than {text:?}: expected e.g. 30d, 12h"))?;
                Some(millis_ago(age)?)
            }
        };
        let experiment_ids = self
            .experiment_ids
            .iter()
            .map(|id| {
                id.trim()
                    .parse::<i64>()
                    .with_context(|| format!("--experiment-ids: {id:?} is not an experiment id"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let run_ids: Vec<String> = self.run_ids.iter().map(|r| r.trim().to_string()).collect();
        Ok((
            config,
            GcOptions {
                query: GcQuery {
                    deleted_before,
                    experiment_ids,
                    run_ids,
                },
                dry_run: self.dry_run,
                progress: true,
            },
        ))
    }
}

fn millis_ago(age: Duration) -> anyhow::Result<i64> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
    let Some(then) = now.checked_sub(age) else {
        bail!("--older-than reaches before 1970");
    };
    Ok(i64::try_from(then.as_millis())?)
}

/// Runs gc against the store and artifact destination of `config`.
pub async fn run(config: &ServerConfig, options: &GcOptions) -> anyhow::Result<GcReport> {
    let (store, _, _) = open_store(config).await?;
    let repo = ArtifactRepo::open(&config.artifacts_destination())
        .context("opening the artifact store")?;
    let service = ArtifactService::new(repo, store.clone());
    let plan = gc::plan(&service, &options.query).await?;
    let total = plan.experiments.len() + plan.runs.len() + plan.logged_models.len();
    let bar = if options.progress {
        ProgressBar::new(total as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(if options.dry_run {
        "gc (dry run)"
    } else {
        "gc"
    });
    let result = gc::run(&service, &plan, options.dry_run, |step| {
        bar.set_message(format!("{} {}", step.kind.as_str(), step.id));
        bar.inc(1);
    })
    .await;
    bar.finish_and_clear();
    store.close().await;
    Ok(result?)
}

/// The summary printed after a gc run.
pub fn summary(report: &GcReport, dry_run: bool) -> String {
    let verb = if dry_run { "Would purge" } else { "Purged" };
    let mut out = String::new();
    for step in &report.steps {
        let note = if step.purged {
            ""
        } else {
            " (skipped: restored or purged meanwhile)"
        };
        out.push_str(&format!(
            "{} {}: {} artifact files, {} bytes{note}\n",
            step.kind.as_str(),
            step.id,
            step.files,
            step.bytes
        ));
        if let Some(uri) = &step.unmanaged_artifacts {
            out.push_str(&format!(
                "  artifacts at {uri} are not managed by this server and were left in place\n"
            ));
        }
    }
    out.push_str(&format!(
        "{verb} {} experiments, {} runs, {} logged models; {} artifact files ({} bytes).\n",
        report.purged(GcKind::Experiment),
        report.purged(GcKind::Run),
        report.purged(GcKind::LoggedModel),
        report.files(),
        report.bytes()
    ));
    out
}
