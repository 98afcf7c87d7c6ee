//! The request context: who is asking and the audit event their request will append,
//! carried in a tokio task-local from the HTTP layer down to the stores.
//!
//! Stores read it at three points only, so a change and what it implies commit together:
//! a search restricts its SQL to what the [`Viewer`] may read; creating an experiment or
//! a registered model grants its creator MANAGE in the creating transaction; and the
//! first write transaction of a request appends the pending audit event before it
//! commits. Outside a request (tests, `cairn gc`) there is no context and none of this
//! happens.

use std::future::Future;
use std::sync::{Arc, Mutex};

use crate::audit::AuditEvent;

/// The caller as searches and creations see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    /// The caller's username.
    pub username: String,
    /// Administrators see everything.
    pub is_admin: bool,
    /// Whether the server's default permission allows reading (a resource the caller
    /// has no grant on is then visible).
    pub default_read: bool,
}

/// Everything a request carries down to the stores.
#[derive(Debug, Default)]
pub struct RequestContext {
    viewer: Option<Viewer>,
    audit: Mutex<AuditState>,
}

#[derive(Debug, Default)]
struct AuditState {
    pending: Option<AuditEvent>,
    recorded: bool,
}

tokio::task_local! {
    static CURRENT: Arc<RequestContext>;
}

impl RequestContext {
    /// A context for `viewer` (`None`: authentication is off) with an audit event to
    /// append if the request changes anything.
    pub fn new(viewer: Option<Viewer>, audit: Option<AuditEvent>) -> Self {
        Self {
            viewer,
            audit: Mutex::new(AuditState {
                pending: audit,
                recorded: false,
            }),
        }
    }

    /// The caller, when authentication is on.
    pub fn viewer(&self) -> Option<&Viewer> {
        self.viewer.as_ref()
    }

    /// The caller's name when it should be granted MANAGE on what it creates.
    pub fn creator(&self) -> Option<&str> {
        self.viewer.as_ref().map(|v| v.username.as_str())
    }

    /// Takes the pending audit event for a transaction to append. Give it back with
    /// [`RequestContext::audit_committed`] or [`RequestContext::audit_rolled_back`].
    pub fn take_audit(&self) -> Option<AuditEvent> {
        self.audit.lock().ok().and_then(|mut s| s.pending.take())
    }

    /// The transaction that carried the event committed.
    pub fn audit_committed(&self) {
        if let Ok(mut s) = self.audit.lock() {
            s.recorded = true;
        }
    }

    /// The transaction that carried the event failed: the event is pending again.
    pub fn audit_rolled_back(&self, event: AuditEvent) {
        if let Ok(mut s) = self.audit.lock() {
            s.pending = Some(event);
        }
    }

    /// Whether an event is waiting for the request's first write transaction.
    pub fn has_pending_audit(&self) -> bool {
        self.audit
            .lock()
            .map(|s| s.pending.is_some())
            .unwrap_or(false)
    }

    /// Whether a transaction of this request appended its event.
    pub fn audit_recorded(&self) -> bool {
        self.audit.lock().map(|s| s.recorded).unwrap_or(false)
    }
}

/// Runs `fut` with `ctx` as the current request context.
pub async fn scope<F: Future>(ctx: Arc<RequestContext>, fut: F) -> F::Output {
    CURRENT.scope(ctx, fut).await
}

/// Runs one write with the current request's pending audit event. `write` gets the
/// event to insert in its transaction (`None` outside a request, or once an earlier
/// write of the request recorded it) and answers `Ok(Some(_))` when its transaction
/// committed, so the event counts as recorded, or `Ok(None)` when it wrote nothing; on
/// `Ok(None)` or an error the event is pending again for a later write or the request's
/// own record.
pub async fn with_pending_audit<T, E, F, Fut>(write: F) -> Result<Option<T>, E>
where
    F: FnOnce(Option<AuditEvent>) -> Fut,
    Fut: Future<Output = Result<Option<T>, E>>,
{
    let ctx = current();
    let event = ctx.as_ref().and_then(|c| c.take_audit());
    let kept = event.clone();
    let result = write(event).await;
    if let (Some(ctx), Some(event)) = (ctx, kept) {
        match &result {
            Ok(Some(_)) => ctx.audit_committed(),
            _ => ctx.audit_rolled_back(event),
        }
    }
    result
}

/// The current request's context, if any.
pub fn current() -> Option<Arc<RequestContext>> {
    CURRENT.try_with(Arc::clone).ok()
}

/// The current caller, if the request has one and it is not an administrator: the
/// viewer a search must restrict itself to.
pub fn restricted_viewer() -> Option<Viewer> {
    current()
        .and_then(|c| c.viewer().cloned())
        .filter(|v| !v.is_admin)
}

/// The current caller's name, to be granted MANAGE on what the request creates.
pub fn creator() -> Option<String> {
    current().and_then(|c| c.creator().map(str::to_string))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_context_is_visible_inside_the_scope_only() {
        assert!(current().is_none());
        let viewer = Viewer {
            username: "alice".into(),
            is_admin: false,
            default_read: true,
        };
        let ctx = Arc::new(RequestContext::new(Some(viewer.clone()), None));
        let seen = scope(ctx, async { restricted_viewer() }).await;
        assert_eq!(seen, Some(viewer));
        assert!(current().is_none());
    }
}
