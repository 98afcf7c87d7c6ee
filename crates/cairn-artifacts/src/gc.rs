//! `cairn gc`: permanently removes deleted experiments, runs and logged models, and their
//! artifacts. MLflow's own `gc` leaves artifacts behind in several cases; here every
//! purged entity's artifact directory goes first, then its rows, so a failure part-way
//! leaves the entity listed for the next run instead of orphaned files.

use cairn_core::audit::AuditEvent;
use cairn_core::context::{self, RequestContext};
use cairn_core::store::{GcCandidates, GcItem, GcQuery};

use crate::{proxied_path, ArtifactError, ArtifactService};

/// What kind of entity a step is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GcKind {
    /// A deleted experiment, with all its runs and logged models.
    Experiment,
    /// A deleted run.
    Run,
    /// A deleted logged model.
    LoggedModel,
}

impl GcKind {
    /// Lowercase name for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Experiment => "experiment",
            Self::Run => "run",
            Self::LoggedModel => "logged model",
        }
    }
}

/// The outcome for one entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcStep {
    /// Kind of entity.
    pub kind: GcKind,
    /// Its id.
    pub id: String,
    /// Artifact files deleted (in a dry run: recorded files that would be).
    pub files: u64,
    /// Bytes of those files, as recorded at upload.
    pub bytes: u64,
    /// Set when the artifact location is not one this server manages (left in place).
    pub unmanaged_artifacts: Option<String>,
    /// False when the entity was restored or purged by someone else meanwhile.
    pub purged: bool,
}

/// Everything one gc run did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// One step per entity, in the order they were handled.
    pub steps: Vec<GcStep>,
}

impl GcReport {
    /// How many entities of `kind` were purged.
    pub fn purged(&self, kind: GcKind) -> usize {
        self.steps
            .iter()
            .filter(|s| s.kind == kind && s.purged)
            .count()
    }

    /// Total artifact files deleted.
    pub fn files(&self) -> u64 {
        self.steps.iter().map(|s| s.files).sum()
    }

    /// Total bytes of deleted artifact files.
    pub fn bytes(&self) -> u64 {
        self.steps.iter().map(|s| s.bytes).sum()
    }
}

/// Lists what a gc run would handle.
pub async fn plan(
    service: &ArtifactService,
    query: &GcQuery,
) -> Result<GcCandidates, ArtifactError> {
    Ok(service.index.gc_candidates(query).await?)
}

/// Purges `plan` (from [`plan`]); with `dry_run`, only measures it. `on_step` is called
/// after each entity, e.g. to advance a progress bar.
pub async fn run(
    service: &ArtifactService,
    plan: &GcCandidates,
    dry_run: bool,
    mut on_step: impl FnMut(&GcStep),
) -> Result<GcReport, ArtifactError> {
    let mut report = GcReport::default();
    let groups = [
        (GcKind::Run, &plan.runs),
        (GcKind::LoggedModel, &plan.logged_models),
        (GcKind::Experiment, &plan.experiments),
    ];
    for (kind, items) in groups {
        for item in items {
            let step = handle(service, kind, item, dry_run).await?;
            on_step(&step);
            report.steps.push(step);
        }
    }
    Ok(report)
}

async fn handle(
    service: &ArtifactService,
    kind: GcKind,
    item: &GcItem,
    dry_run: bool,
) -> Result<GcStep, ArtifactError> {
    let mut step = GcStep {
        kind,
        id: item.id.clone(),
        files: 0,
        bytes: 0,
        unmanaged_artifacts: None,
        purged: false,
    };
    match proxied_path(&item.artifact_uri) {
        Some(Ok(path)) if !path.is_root() => {
            let recorded = service.index.artifact_files(path.as_str()).await?;
            step.bytes = recorded.iter().map(|f| f.size.max(0) as u64).sum();
            step.files = if dry_run {
                recorded.len() as u64
            } else {
                service.delete(&path).await?
            };
        }
        // Outside the proxied store (or its very root): never touched by the server.
        _ => step.unmanaged_artifacts = Some(item.artifact_uri.clone()),
    }
    if dry_run {
        step.purged = true;
        return Ok(step);
    }
    // The purge is audited like a request: its event commits in the purge's transaction.
    let (what, resource) = match kind {
        GcKind::Run => ("run", format!("run:{}", item.id)),
        GcKind::LoggedModel => ("logged model", format!("logged-model:{}", item.id)),
        GcKind::Experiment => ("experiment", format!("experiment:{}", item.id)),
    };
    let event = AuditEvent {
        time_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0),
        actor: GC_ACTOR.into(),
        auth_method: "cli".into(),
        source_ip: "local".into(),
        action: format!("GC purge {what}"),
        resource,
        outcome: "ok".into(),
        request_id: String::new(),
    };
    let ctx = std::sync::Arc::new(RequestContext::new(None, Some(event)));
    step.purged = context::scope(ctx, async {
        Ok::<bool, ArtifactError>(match kind {
            GcKind::Run => service.index.purge_run(&item.id).await?,
            GcKind::LoggedModel => service.index.purge_logged_model(&item.id).await?,
            GcKind::Experiment => {
                let id: i64 = item.id.parse().map_err(|_| {
                    ArtifactError::Index(cairn_core::CoreError::Internal(format!(
                        "experiment id {:?} is not numeric",
                        item.id
                    )))
                })?;
                service.index.purge_experiment(id).await?
            }
        })
    })
    .await?;
    Ok(step)
}

/// The actor `cairn gc` purges are recorded under in the audit log.
pub const GC_ACTOR: &str = "cairn-gc";
