//! The seam between the tracker and the policy stage: the tracker builds the facts of every
//! client→server message and asks a [`RequestPolicy`] for a judgement; it then writes the
//! verdict record and the session's attack. The policy crate-module implements it
//! (`policy::Judge`); the tracker knows nothing of rules.

use super::ToolCatalog;
use crate::policy::{Judgement, RequestFacts};

/// Judges client→server messages.
pub trait RequestPolicy: std::fmt::Debug + Send + std::any::Any {
    /// The judgement of one message; `catalog` is the server's, when one was seen.
    fn judge(&mut self, facts: &RequestFacts, catalog: Option<&ToolCatalog>) -> Judgement;
    /// A server's tools list was committed (first sight pins definitions).
    fn observe_catalog(&mut self, server: &str, catalog: &ToolCatalog);
    /// Whether plain allows are recorded too.
    fn record_allows(&self) -> bool;
    /// The concrete policy (to reload it or accept a pinned definition).
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any;
}

impl RequestPolicy for crate::policy::Judge {
    fn judge(&mut self, facts: &RequestFacts, catalog: Option<&ToolCatalog>) -> Judgement {
        crate::policy::Judge::judge(self, facts, catalog)
    }

    fn observe_catalog(&mut self, server: &str, catalog: &ToolCatalog) {
        crate::policy::Judge::observe_catalog(self, server, catalog);
    }

    fn record_allows(&self) -> bool {
        self.policy().record_allows()
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

impl std::fmt::Debug for crate::policy::Judge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Judge")
            .field("policy", &self.policy().file())
            .field("stats", &self.stats())
            .finish()
    }
}
