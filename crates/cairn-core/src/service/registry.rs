//! The model-registry service: MLflow's registry validation (names, versions, aliases,
//! stages, tags, sources), the prompt clause of registry searches, and one store call
//! per write.

use std::sync::Arc;

use super::{now_millis, unique_order_by};
use crate::error::{CoreError, CoreResult};
use crate::model::Tag;
use crate::page::{decode_offset, Page};
use crate::registry::{
    ModelVersion, NewModelVersion, NewRegisteredModel, RegisteredModel, RegistrySearch,
    RegistryStore, Stage, StageTransition, IS_PROMPT_TAG_KEY,
};
use crate::search::{
    parse_filter, parse_order_by, Attribute, CompareOp, Condition, Field, Filter, SearchKind, Value,
};
use crate::store::{dedup_tags, TrackingStore};
use crate::validation as v;

/// Longest registry tag key.
pub const MAX_REGISTRY_TAG_KEY_LENGTH: usize = 250;
/// Longest registry tag value.
pub const MAX_REGISTRY_TAG_VALUE_LENGTH: usize = 100_000;
/// Longest alias.
pub const MAX_ALIAS_LENGTH: usize = 255;
/// Default page size of `registered-models/search`.
pub const SEARCH_REGISTERED_MODELS_DEFAULT: i64 = 100;
/// Largest page of `registered-models/search`.
pub const SEARCH_REGISTERED_MODELS_MAX: u64 = 1000;
/// Default page size of `model-versions/search`.
pub const SEARCH_MODEL_VERSIONS_DEFAULT: i64 = 10_000;
/// Largest page of `model-versions/search`.
pub const SEARCH_MODEL_VERSIONS_MAX: u64 = 200_000;

/// Input of `model-versions/create`, as sent by the client.
#[derive(Debug, Clone, Default)]
pub struct CreateModelVersionRequest {
    /// Registered model name.
    pub name: String,
    /// Source URI.
    pub source: String,
    /// Producing run.
    pub run_id: Option<String>,
    /// Link to the run.
    pub run_link: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// MLflow 3 logged model id.
    pub model_id: Option<String>,
    /// Tags.
    pub tags: Vec<Tag>,
}

/// Input of both registry searches, as sent by the client.
#[derive(Debug, Clone, Default)]
pub struct RegistrySearchRequest {
    /// Filter string.
    pub filter: Option<String>,
    /// Page size.
    pub max_results: Option<i64>,
    /// `order_by` clauses.
    pub order_by: Vec<String>,
    /// Page token.
    pub page_token: Option<String>,
}

/// MLflow's model-registry operations over a [`RegistryStore`]; the tracking store
/// resolves the runs and logged models that version sources point at.
#[derive(Clone)]
pub struct RegistryService {
    store: Arc<dyn RegistryStore>,
    tracking: Arc<dyn TrackingStore>,
}

/// Refuses NUL characters: PostgreSQL cannot store them in text, and no MLflow client
/// sends them, so they are bad input rather than a storage failure.
pub fn reject_nul(path: &str, value: &str) -> CoreResult<()> {
    if value.contains('\0') {
        return Err(v::invalid_value(
            path,
            value,
            Some("NUL characters are not allowed."),
        ));
    }
    Ok(())
}

fn reject_nul_opt(path: &str, value: &Option<String>) -> CoreResult<()> {
    value.as_deref().map_or(Ok(()), |v| reject_nul(path, v))
}

/// Validates a registered-model name (`path` is `name` or `new_name`).
pub fn validate_model_name(path: &str, name: &str) -> CoreResult<()> {
    if name.trim().is_empty() {
        return Err(v::missing_value(path));
    }
    reject_nul(path, name)?;
    if name.contains('/') || name.contains(':') {
        return Err(CoreError::invalid(format!(
            "Invalid model name '{name}'. Names cannot contain '/' or ':'."
        )));
    }
    if !v::normalises_to_itself(name) {
        return Err(v::invalid_value(path, name, Some(&v::bad_path(name))));
    }
    Ok(())
}

/// Parses a version number the way MLflow's `int(version)` does.
pub fn parse_version(version: &str) -> CoreResult<i64> {
    version.trim().parse::<i64>().map_err(|_| {
        CoreError::invalid(format!(
            "Parameter 'version' must be an integer, got '{version}'."
        ))
    })
}

/// Validates an alias name: `^[\w\-]*$`, non-empty, at most 255 characters.
pub fn validate_alias(alias: &str) -> CoreResult<()> {
    if alias.is_empty() {
        return Err(CoreError::invalid(
            "Registered model alias name cannot be empty.",
        ));
    }
    if !alias
        .chars()
        .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
    {
        return Err(CoreError::invalid(format!(
            "Invalid alias name: '{alias}'. Names may only contain alphanumerics, underscores \
             (_), and dashes (-)."
        )));
    }
    v::check_length("Registered model alias name", MAX_ALIAS_LENGTH, alias)
}

/// Rejects the aliases MLflow reserves: `latest` and `v<digits>` (case-insensitively).
pub fn validate_alias_not_reserved(alias: &str) -> CoreResult<()> {
    if alias.eq_ignore_ascii_case("latest") {
        return Err(CoreError::invalid(
            "'latest' alias name (case insensitive) is reserved.",
        ));
    }
    let mut chars = alias.chars();
    if matches!(chars.next(), Some('v' | 'V'))
        && !alias[1..].is_empty()
        && alias[1..].chars().all(|c| c.is_ascii_digit())
    {
        return Err(CoreError::invalid(format!(
            "Version alias name '{alias}' is reserved."
        )));
    }
    Ok(())
}

/// The sources MLflow's clients give prompt versions (unused: the template is a tag).
pub const PROMPT_SOURCE_PLACEHOLDERS: [&str; 2] = ["dummy-source", "prompt-template"];

/// Whether a version's tags make it a prompt version (the last value of the tag wins).
fn is_prompt_request(tags: &[Tag]) -> bool {
    tags.iter()
        .rev()
        .find(|t| t.key == IS_PROMPT_TAG_KEY)
        .is_some_and(|t| t.value.eq_ignore_ascii_case("true"))
}

/// Validates a registered-model or model-version tag.
pub fn validate_registry_tag(tag: &Tag) -> CoreResult<()> {
    v::validate_key("key", &tag.key)?;
    reject_nul("value", &tag.value)?;
    v::check_length("key", MAX_REGISTRY_TAG_KEY_LENGTH, &tag.key)?;
    v::check_length("value", MAX_REGISTRY_TAG_VALUE_LENGTH, &tag.value)
}

/// Splits MLflow's prompt clause off a registry filter. Unless the filter asks for
/// prompts (`tags.mlflow.prompt.is_prompt = 'true'` or `!= 'false'`), every top-level
/// condition on that tag is dropped and prompts are excluded instead: models without the
/// tag must match the `!= 'true'` the client always appends.
pub fn split_prompt_clause(filter: Option<Filter>) -> (Option<Filter>, bool) {
    let Some(filter) = filter else {
        return (None, true);
    };
    let conjuncts = match filter {
        Filter::And(parts) => parts,
        other => vec![other],
    };
    let querying_prompts =
        conjuncts
            .iter()
            .find_map(is_prompt_cond)
            .is_some_and(|c| match (&c.op, &c.value) {
                (CompareOp::Eq, Value::Str(s)) => s.eq_ignore_ascii_case("true"),
                (CompareOp::Ne, Value::Str(s)) => s.eq_ignore_ascii_case("false"),
                _ => false,
            });
    let kept: Vec<Filter> = if querying_prompts {
        conjuncts
    } else {
        conjuncts
            .into_iter()
            .filter(|f| is_prompt_cond(f).is_none())
            .collect()
    };
    let filter = match kept.len() {
        0 => None,
        1 => kept.into_iter().next(),
        _ => Some(Filter::And(kept)),
    };
    (filter, !querying_prompts)
}

fn is_prompt_cond(f: &Filter) -> Option<&Condition> {
    match f {
        Filter::Cond(c) if c.field == Field::Tag(IS_PROMPT_TAG_KEY.to_string()) => Some(c),
        _ => None,
    }
}

/// MLflow rejects fractional version numbers in filters.
fn check_integral_versions(filter: &Filter) -> CoreResult<()> {
    match filter {
        Filter::And(parts) | Filter::Or(parts) => {
            parts.iter().try_for_each(check_integral_versions)
        }
        Filter::Cond(c) => match (&c.field, &c.value) {
            (Field::Attr(Attribute::VersionNumber), Value::Number(n)) if n.fract() != 0.0 => {
                Err(CoreError::invalid(format!(
                    "Invalid value for numeric attribute 'version_number': {n}"
                )))
            }
            _ => Ok(()),
        },
    }
}

/// Percent-decodes until stable, as MLflow does before checking a source's path.
fn unquote_fully(s: &str) -> String {
    let mut cur = s.to_string();
    for _ in 0..8 {
        let bytes = cur.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
                (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                    out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                    i += 3;
                }
                (b'+', _, _) => {
                    out.push(b' ');
                    i += 1;
                }
                (b, _, _) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        let next = String::from_utf8_lossy(&out).into_owned();
        if next == cur {
            break;
        }
        cur = next;
    }
    cur
}

/// `(scheme, authority, path segments)` of a URI, lower-casing scheme and authority.
fn uri_parts(uri: &str) -> (String, String, Vec<String>) {
    let (scheme, rest) = match uri.split_once(':') {
        Some((s, rest))
            if !s.is_empty()
                && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) =>
        {
            (s.to_ascii_lowercase(), rest)
        }
        _ => (String::new(), uri),
    };
    let (authority, path) = match rest.strip_prefix("//") {
        Some(r) => match r.split_once('/') {
            Some((a, p)) => (a.to_ascii_lowercase(), p),
            None => (r.to_ascii_lowercase(), ""),
        },
        None => (String::new(), rest),
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
    let parts = path
        .split('/')
        .filter(|p| !p.is_empty())
        .map(unquote_fully)
        .collect();
    (scheme, authority, parts)
}

fn is_within(source: &str, root: &str) -> bool {
    let (ss, sa, sp) = uri_parts(source);
    let (rs, ra, rp) = uri_parts(root);
    ss == rs && sa == ra && !rp.is_empty() && sp.starts_with(&rp)
}

fn is_local(scheme: &str) -> bool {
    scheme.is_empty() || scheme == "file"
}

fn invalid_source(source: &str, id_name: &str) -> CoreError {
    CoreError::invalid(format!(
        "Invalid model version source: '{source}'. The {id_name} request parameter must \
         identify the resource that contains the source."
    ))
}

/// Sources must be absolute: no `.`/`..` segments or NUL bytes, however encoded.
fn check_no_relative_parts(source: &str) -> CoreResult<()> {
    let decoded = unquote_fully(source);
    let bad = decoded.contains('\0')
        || decoded
            .split('/')
            .enumerate()
            // A leading "." or "./x" is a relative local path, also refused.
            .any(|(i, p)| p == ".." || (p == "." && (i > 0 || decoded.starts_with('.'))));
    if bad {
        return Err(CoreError::invalid(format!(
            "Invalid model version source: '{source}'. If supplying a source as an http, \
             https, local file path, ftp, objectstore, or mlflow-artifacts uri, an absolute \
             path must be provided without relative path references present. Please provide \
             an absolute path."
        )));
    }
    Ok(())
}

/// A version made from another registered version records the canonical
/// `models:/<name>/<version>` source, that version's location, and its run and logged
/// model unless given; given ones must match it.
fn lineage(
    source: &str,
    mv: ModelVersion,
    run_id: Option<String>,
    model_id: Option<&str>,
) -> CoreResult<ResolvedSource> {
    let mismatch = |given: Option<&str>, theirs: &Option<String>| {
        given.is_some_and(|g| Some(g) != theirs.as_deref())
    };
    if mismatch(run_id.as_deref(), &mv.run_id) || mismatch(model_id, &mv.model_id) {
        return Err(CoreError::invalid(format!(
            "Invalid model version source: '{source}'. The run_id and model_id request \
             parameters must match the referenced model version."
        )));
    }
    Ok(ResolvedSource {
        source: Some(format!("models:/{}/{}", mv.name, mv.version)),
        storage_location: Some(mv.storage_location.unwrap_or(mv.source)),
        run_id: run_id.or(mv.run_id),
        model_id: model_id.map(str::to_string).or(mv.model_id),
    })
}

fn is_mlflow_artifacts(scheme: &str, parts: &[String]) -> bool {
    const ROUTE: [&str; 4] = ["api", "2.0", "mlflow-artifacts", "artifacts"];
    scheme == "mlflow-artifacts"
        || (matches!(scheme, "http" | "https")
            && parts
                .windows(ROUTE.len())
                .any(|w| w.iter().eq(ROUTE.iter())))
}

/// Where a new version's artifacts are and which run produced it, once its source has
/// been checked against the run or logged model it claims to come from.
struct ResolvedSource {
    /// The source to record, when MLflow rewrites it (`models:/<name>/<version>`).
    source: Option<String>,
    storage_location: Option<String>,
    run_id: Option<String>,
    model_id: Option<String>,
}

impl ResolvedSource {
    fn plain(run_id: Option<String>, model_id: Option<&str>) -> Self {
        Self {
            source: None,
            storage_location: None,
            run_id,
            model_id: model_id.map(str::to_string),
        }
    }
}

impl RegistryService {
    /// Wraps the stores.
    pub fn new(store: Arc<dyn RegistryStore>, tracking: Arc<dyn TrackingStore>) -> Self {
        Self { store, tracking }
    }

    /// Creates a registered model.
    pub async fn create_registered_model(
        &self,
        name: String,
        description: Option<String>,
        tags: Vec<Tag>,
    ) -> CoreResult<RegisteredModel> {
        validate_model_name("name", &name)?;
        reject_nul_opt("description", &description)?;
        tags.iter().try_for_each(validate_registry_tag)?;
        self.store
            .create_registered_model(NewRegisteredModel {
                name,
                description,
                tags: dedup_tags(&tags),
                now: now_millis(),
            })
            .await
    }

    /// Gets a registered model with its latest versions and aliases.
    pub async fn get_registered_model(&self, name: &str) -> CoreResult<RegisteredModel> {
        validate_model_name("name", name)?;
        self.store.get_registered_model(name).await
    }

    /// Replaces a registered model's description.
    pub async fn update_registered_model(
        &self,
        name: &str,
        description: Option<String>,
    ) -> CoreResult<RegisteredModel> {
        validate_model_name("name", name)?;
        reject_nul_opt("description", &description)?;
        self.store
            .update_registered_model(name, description, now_millis())
            .await
    }

    /// Renames a registered model.
    pub async fn rename_registered_model(
        &self,
        name: &str,
        new_name: &str,
    ) -> CoreResult<RegisteredModel> {
        validate_model_name("name", name)?;
        validate_model_name("new_name", new_name)?;
        self.store
            .rename_registered_model(name, new_name, now_millis())
            .await
    }

    /// Deletes a registered model and everything under it.
    pub async fn delete_registered_model(&self, name: &str) -> CoreResult<()> {
        validate_model_name("name", name)?;
        self.store.delete_registered_model(name).await
    }

    /// Searches registered models.
    pub async fn search_registered_models(
        &self,
        req: RegistrySearchRequest,
    ) -> CoreResult<Page<RegisteredModel>> {
        let max = req.max_results.unwrap_or(SEARCH_REGISTERED_MODELS_DEFAULT);
        if max > SEARCH_REGISTERED_MODELS_MAX as i64 {
            return Err(CoreError::invalid(format!(
                "Invalid value for request parameter max_results. It must be at most \
                 {SEARCH_REGISTERED_MODELS_MAX}, but got value {max}"
            )));
        }
        let max_results = v::validate_max_results(max, SEARCH_REGISTERED_MODELS_MAX)?;
        let q = self.search_query(SearchKind::RegisteredModels, req, max_results)?;
        self.store.search_registered_models(&q).await
    }

    /// The latest version per stage, optionally only for the given stages.
    pub async fn get_latest_versions(
        &self,
        name: &str,
        stages: &[String],
    ) -> CoreResult<Vec<ModelVersion>> {
        validate_model_name("name", name)?;
        let wanted: Vec<Stage> = stages
            .iter()
            .map(|s| s.parse::<Stage>())
            .collect::<CoreResult<_>>()?;
        let model = self.store.get_registered_model(name).await?;
        Ok(model
            .latest_versions
            .into_iter()
            .filter(|mv| wanted.is_empty() || wanted.contains(&mv.current_stage))
            .collect())
    }

    /// Sets a registered-model tag.
    pub async fn set_registered_model_tag(&self, name: &str, tag: Tag) -> CoreResult<()> {
        validate_model_name("name", name)?;
        validate_registry_tag(&tag)?;
        self.store.set_registered_model_tag(name, &tag).await
    }

    /// Deletes a registered-model tag.
    pub async fn delete_registered_model_tag(&self, name: &str, key: &str) -> CoreResult<()> {
        validate_model_name("name", name)?;
        v::validate_key("key", key)?;
        self.store.delete_registered_model_tag(name, key).await
    }

    /// Creates the next version of a registered model, READY at once.
    pub async fn create_model_version(
        &self,
        req: CreateModelVersionRequest,
    ) -> CoreResult<ModelVersion> {
        validate_model_name("name", &req.name)?;
        req.tags.iter().try_for_each(validate_registry_tag)?;
        if req.source.is_empty() {
            return Err(v::missing_value("source"));
        }
        reject_nul("source", &req.source)?;
        reject_nul_opt("run_id", &req.run_id)?;
        reject_nul_opt("run_link", &req.run_link)?;
        reject_nul_opt("description", &req.description)?;
        reject_nul_opt("model_id", &req.model_id)?;
        let run_id = req.run_id.filter(|s| !s.is_empty());
        let model_id = req.model_id.filter(|s| !s.is_empty());
        let resolved = if is_prompt_request(&req.tags) {
            // Prompt versions carry their template in tags; the source is a placeholder.
            if !PROMPT_SOURCE_PLACEHOLDERS.contains(&req.source.as_str()) {
                return Err(CoreError::invalid(format!(
                    "Invalid prompt source: '{}'. Prompt sources must use an MLflow placeholder.",
                    req.source
                )));
            }
            ResolvedSource::plain(run_id, model_id.as_deref())
        } else {
            self.resolve_source(&req.source, run_id, model_id.as_deref())
                .await?
        };
        self.store
            .create_model_version(NewModelVersion {
                name: req.name,
                source: resolved.source.unwrap_or(req.source),
                storage_location: resolved.storage_location,
                // MLflow stores the proto defaults ("") for absent strings and sends them.
                run_id: Some(resolved.run_id.unwrap_or_default()),
                run_link: Some(req.run_link.unwrap_or_default()),
                description: Some(req.description.unwrap_or_default()),
                model_id: resolved.model_id,
                tags: dedup_tags(&req.tags),
                now: now_millis(),
            })
            .await
    }

    /// MLflow's source rules (`server/handlers.py`): a source must be absolute and, when
    /// it points into a run's or logged model's artifacts, that run or model must be named
    /// and must contain it. `models:/<model_id>` resolves to the model's artifact URI.
    async fn resolve_source(
        &self,
        source: &str,
        run_id: Option<String>,
        model_id: Option<&str>,
    ) -> CoreResult<ResolvedSource> {
        let (scheme, authority, parts) = uri_parts(source);
        let id_name = if model_id.is_some() {
            "model_id"
        } else {
            "run_id"
        };
        if scheme == "models" {
            if !authority.is_empty() {
                return Err(invalid_source(source, "model_id"));
            }
            return match parts.as_slice() {
                // models:/<model_id>
                [id] if !id.contains('@') => {
                    if model_id != Some(id.as_str()) {
                        return Err(invalid_source(source, "model_id"));
                    }
                    let model = self.logged_model(source, id).await?;
                    Ok(ResolvedSource {
                        source: None,
                        storage_location: Some(model.artifact_uri),
                        run_id: run_id.or(model.source_run_id),
                        model_id: Some(id.clone()),
                    })
                }
                // Another registered version: models:/<name>@<alias>, models:/<name>/<n>,
                // models:/<name>/latest or models:/<name>/<stage> (copy_model_version).
                [name_alias] => match name_alias.split_once('@') {
                    Some((name, alias)) => {
                        let mv = self.get_model_version_by_alias(name, alias).await?;
                        lineage(source, mv, run_id, model_id)
                    }
                    None => Err(invalid_source(source, "model_id")),
                },
                [name, spec] => {
                    let mv = self.resolve_version_spec(source, name, spec).await?;
                    lineage(source, mv, run_id, model_id)
                }
                _ => Err(invalid_source(source, "model_id")),
            };
        }
        if is_local(&scheme) {
            let root = match (model_id, &run_id) {
                (Some(id), _) => Some(self.logged_model(source, id).await?.artifact_uri),
                (None, Some(run)) => Some(self.run_artifact_uri(source, run).await?),
                (None, None) => None,
            };
            let inside = root.is_some_and(|root| {
                is_local(&uri_parts(&root).0) && {
                    let (_, _, rp) = uri_parts(&root);
                    !rp.is_empty() && parts.starts_with(&rp)
                }
            });
            if !inside {
                return Err(CoreError::invalid(format!(
                    "Invalid model version source: '{source}'. To use a local path as a model \
                     version source, the {id_name} request parameter has to be specified and \
                     the local path has to be contained within the artifact directory of the \
                     run specified by the {id_name}."
                )));
            }
            check_no_relative_parts(source)?;
            return Ok(ResolvedSource::plain(run_id, model_id));
        }
        check_no_relative_parts(source)?;
        if scheme == "runs" {
            if !authority.is_empty() || model_id.is_some() {
                return Err(invalid_source(source, id_name));
            }
            if run_id.is_none() || parts.first() != run_id.as_ref() {
                return Err(invalid_source(source, "run_id"));
            }
        }
        let mut run_id = run_id;
        if let Some(id) = model_id {
            let model = self.logged_model(source, id).await?;
            if is_mlflow_artifacts(&scheme, &parts) && !is_within(source, &model.artifact_uri) {
                return Err(invalid_source(source, "model_id"));
            }
            run_id = run_id.or(model.source_run_id);
        } else if is_mlflow_artifacts(&scheme, &parts) {
            let root = match &run_id {
                Some(run) => self.run_artifact_uri(source, run).await?,
                None => return Err(invalid_source(source, "run_id")),
            };
            if !is_within(source, &root) {
                return Err(invalid_source(source, "run_id"));
            }
        }
        Ok(ResolvedSource::plain(run_id, model_id))
    }

    /// The version a `models:/<name>/<spec>` source names: a number, `latest`, or a stage
    /// (its latest version).
    async fn resolve_version_spec(
        &self,
        source: &str,
        name: &str,
        spec: &str,
    ) -> CoreResult<ModelVersion> {
        if let Ok(version) = spec.parse::<i64>() {
            return self.store.get_model_version(name, version).await;
        }
        let stage = if spec.eq_ignore_ascii_case("latest") {
            None
        } else {
            Some(
                spec.parse::<Stage>()
                    .map_err(|_| invalid_source(source, "model_id"))?,
            )
        };
        let model = self.store.get_registered_model(name).await?;
        model
            .latest_versions
            .into_iter()
            .filter(|mv| stage.is_none_or(|s| mv.current_stage == s))
            .max_by_key(|mv| mv.version)
            .ok_or_else(|| invalid_source(source, "model_id"))
    }

    async fn logged_model(
        &self,
        source: &str,
        model_id: &str,
    ) -> CoreResult<crate::model::LoggedModel> {
        match self.tracking.get_logged_model(model_id).await {
            Err(CoreError::NotFound(_)) => Err(invalid_source(source, "model_id")),
            other => other,
        }
    }

    async fn run_artifact_uri(&self, source: &str, run_id: &str) -> CoreResult<String> {
        match self.tracking.get_run(run_id).await {
            Ok(run) => Ok(run.info.artifact_uri),
            Err(CoreError::NotFound(_)) => Err(invalid_source(source, "run_id")),
            Err(e) => Err(e),
        }
    }

    /// Gets one model version.
    pub async fn get_model_version(&self, name: &str, version: &str) -> CoreResult<ModelVersion> {
        validate_model_name("name", name)?;
        let version = parse_version(version)?;
        self.store.get_model_version(name, version).await
    }

    /// Replaces a version's description.
    pub async fn update_model_version(
        &self,
        name: &str,
        version: &str,
        description: Option<String>,
    ) -> CoreResult<ModelVersion> {
        validate_model_name("name", name)?;
        let version = parse_version(version)?;
        reject_nul_opt("description", &description)?;
        self.store
            .update_model_version(name, version, description, now_millis())
            .await
    }

    /// Moves a version to another stage.
    pub async fn transition_model_version_stage(
        &self,
        name: &str,
        version: &str,
        stage: &str,
        archive_existing_versions: bool,
    ) -> CoreResult<ModelVersion> {
        validate_model_name("name", name)?;
        let version = parse_version(version)?;
        let target: Stage = stage.parse()?;
        if archive_existing_versions && !target.is_active() {
            // MLflow answers this with INTERNAL_ERROR (500); it is bad input, so 400 here.
            return Err(CoreError::invalid(format!(
                "Model version transition cannot archive existing model versions because \
                 '{stage}' is not an Active stage. Valid stages are ['Staging', 'Production']"
            )));
        }
        self.store
            .transition_model_version_stage(&StageTransition {
                name: name.to_string(),
                version,
                stage: target,
                archive_existing_versions,
                now: now_millis(),
            })
            .await
    }

    /// Deletes a version (its number is never reused).
    pub async fn delete_model_version(&self, name: &str, version: &str) -> CoreResult<()> {
        validate_model_name("name", name)?;
        let version = parse_version(version)?;
        self.store
            .delete_model_version(name, version, now_millis())
            .await
    }

    /// Where a version's artifacts can be downloaded from.
    pub async fn get_model_version_download_uri(
        &self,
        name: &str,
        version: &str,
    ) -> CoreResult<String> {
        let mv = self.get_model_version(name, version).await?;
        if let Some(location) = mv.storage_location.filter(|s| !s.is_empty()) {
            return Ok(location);
        }
        // A `models:/<model_id>` source stored without a location: resolve it now.
        if let (Some(id), Some(rest)) = (&mv.model_id, mv.source.strip_prefix("models:/")) {
            if rest == id {
                return Ok(self.tracking.get_logged_model(id).await?.artifact_uri);
            }
        }
        Ok(mv.source)
    }

    /// Searches model versions.
    pub async fn search_model_versions(
        &self,
        req: RegistrySearchRequest,
    ) -> CoreResult<Page<ModelVersion>> {
        let max = req.max_results.unwrap_or(SEARCH_MODEL_VERSIONS_DEFAULT);
        if max < 1 {
            return Err(CoreError::invalid(format!(
                "Invalid value for max_results. It must be a positive integer, but got {max}"
            )));
        }
        if max > SEARCH_MODEL_VERSIONS_MAX as i64 {
            return Err(CoreError::invalid(format!(
                "Invalid value for request parameter max_results. It must be at most \
                 {SEARCH_MODEL_VERSIONS_MAX}, but got value {max}"
            )));
        }
        let mut req = req;
        if req.order_by.is_empty() {
            req.order_by = vec![
                "last_updated_timestamp DESC".to_string(),
                "name ASC".to_string(),
                "version_number DESC".to_string(),
            ];
        }
        let q = self.search_query(SearchKind::ModelVersions, req, max as u64)?;
        self.store.search_model_versions(&q).await
    }

    fn search_query(
        &self,
        kind: SearchKind,
        req: RegistrySearchRequest,
        max_results: u64,
    ) -> CoreResult<RegistrySearch> {
        reject_nul_opt("filter", &req.filter)?;
        let filter = parse_filter(kind, req.filter.as_deref().unwrap_or(""))?;
        if let Some(f) = &filter {
            check_integral_versions(f)?;
        }
        let (filter, exclude_prompts) = split_prompt_clause(filter);
        Ok(RegistrySearch {
            filter,
            exclude_prompts,
            order_by: unique_order_by(parse_order_by(kind, &req.order_by)?)?,
            max_results,
            offset: decode_offset(req.page_token.as_deref())?,
        })
    }

    /// Sets a model-version tag.
    pub async fn set_model_version_tag(
        &self,
        name: &str,
        version: &str,
        tag: Tag,
    ) -> CoreResult<()> {
        validate_model_name("name", name)?;
        let version = parse_version(version)?;
        validate_registry_tag(&tag)?;
        self.store.set_model_version_tag(name, version, &tag).await
    }

    /// Deletes a model-version tag.
    pub async fn delete_model_version_tag(
        &self,
        name: &str,
        version: &str,
        key: &str,
    ) -> CoreResult<()> {
        validate_model_name("name", name)?;
        let version = parse_version(version)?;
        v::validate_key("key", key)?;
        self.store
            .delete_model_version_tag(name, version, key)
            .await
    }

    /// Points an alias at a version.
    pub async fn set_registered_model_alias(
        &self,
        name: &str,
        alias: &str,
        version: &str,
    ) -> CoreResult<()> {
        validate_model_name("name", name)?;
        validate_alias(alias)?;
        validate_alias_not_reserved(alias)?;
        let version = parse_version(version)?;
        self.store
            .set_registered_model_alias(name, alias, version)
            .await
    }

    /// Deletes an alias.
    pub async fn delete_registered_model_alias(&self, name: &str, alias: &str) -> CoreResult<()> {
        validate_model_name("name", name)?;
        validate_alias(alias)?;
        self.store.delete_registered_model_alias(name, alias).await
    }

    /// The version an alias points at; `latest` is the highest live version.
    pub async fn get_model_version_by_alias(
        &self,
        name: &str,
        alias: &str,
    ) -> CoreResult<ModelVersion> {
        validate_model_name("name", name)?;
        validate_alias(alias)?;
        if alias.eq_ignore_ascii_case("latest") {
            let model = self.store.get_registered_model(name).await?;
            let newest = model
                .latest_versions
                .into_iter()
                .max_by_key(|mv| mv.version)
                .ok_or_else(|| {
                    CoreError::not_found(format!("Latest version not found for model {name}."))
                })?;
            return self.store.get_model_version(name, newest.version).await;
        }
        self.store.get_model_version_by_alias(name, alias).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag_cond(op: CompareOp, value: &str) -> Filter {
        Filter::Cond(Condition {
            field: Field::Tag(IS_PROMPT_TAG_KEY.to_string()),
            op,
            value: Value::Str(value.to_string()),
        })
    }

    #[test]
    fn prompt_clause_is_split_off() {
        let name = Filter::Cond(Condition {
            field: Field::Attr(Attribute::Name),
            op: CompareOp::Eq,
            value: Value::Str("m".into()),
        });
        let (f, exclude) = split_prompt_clause(Some(Filter::And(vec![
            name.clone(),
            tag_cond(CompareOp::Ne, "true"),
        ])));
        assert_eq!(f, Some(name.clone()));
        assert!(exclude);
        let (f, exclude) = split_prompt_clause(Some(tag_cond(CompareOp::Eq, "TRUE")));
        assert_eq!(f, Some(tag_cond(CompareOp::Eq, "TRUE")));
        assert!(!exclude);
        let (f, exclude) = split_prompt_clause(None);
        assert!(f.is_none() && exclude);
    }

    #[test]
    fn aliases() {
        assert!(validate_alias("champion_1-b").is_ok());
        assert!(validate_alias("").is_err());
        assert!(validate_alias("a b").is_err());
        assert!(validate_alias(&"a".repeat(256)).is_err());
        assert!(validate_alias_not_reserved("Latest").is_err());
        assert!(validate_alias_not_reserved("V12").is_err());
        assert!(validate_alias_not_reserved("v").is_ok());
        assert!(validate_alias_not_reserved("v1a").is_ok());
    }

    #[test]
    fn model_names_and_versions() {
        assert!(validate_model_name("name", "iris").is_ok());
        assert!(validate_model_name("name", " ").is_err());
        assert!(validate_model_name("name", "a/b").is_err());
        assert!(validate_model_name("name", "..").is_err());
        assert!(validate_model_name("name", "a\0b").is_err());
        assert!(validate_registry_tag(&Tag {
            key: "k".into(),
            value: "a\0".into()
        })
        .is_err());
        assert_eq!(parse_version(" 3 ").ok(), Some(3));
        assert!(parse_version("x").is_err());
    }

    #[test]
    fn sources() {
        assert!(check_no_relative_parts("s3://b/models/1").is_ok());
        assert!(check_no_relative_parts("s3://b/../x").is_err());
        assert!(check_no_relative_parts("s3://b/%2e%2e/x").is_err());
        assert!(is_within(
            "mlflow-artifacts:/1/abc/artifacts/model",
            "mlflow-artifacts:/1/abc/artifacts"
        ));
        assert!(!is_within(
            "mlflow-artifacts:/1/abd/artifacts/model",
            "mlflow-artifacts:/1/abc/artifacts"
        ));
    }
}
