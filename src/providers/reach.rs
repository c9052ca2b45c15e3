//! Whether a failed call may have reached AWS, decided over all its attempts.
//!
//! The SDK retries a call and hands back the last attempt's error alone. A
//! create whose first answer was lost and whose retries then could not
//! connect ends in a connect error, as if nothing had been sent; a call
//! whose credentials could not be found ends in an error that looks like a
//! lost answer, though nothing left the machine. This interceptor keeps a
//! ledger of the attempts of each call: which were sent, and which of those
//! AWS may have acted on (no answer, or a 5xx). When the last attempt's
//! error says otherwise than the ledger, the error is marked with the
//! ledger's verdict, which `aws()` reads.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextMut,
    FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::OrchestratorError;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};

use super::Reach;

/// The attempts of one call so far. The interceptor keeps one per SDK call;
/// the deterministic simulation (dst.rs) keeps one per simulated call, so
/// both are judged by the same rule.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    /// An attempt was handed to the connection (signed, about to be sent).
    sent: bool,
    /// The current attempt was.
    sending: bool,
    /// A sent attempt got no answer, or a 5xx: AWS may have acted on it.
    maybe_acted: bool,
}

impl Ledger {
    /// An attempt is handed to the connection.
    pub fn sending(&mut self) {
        (self.sent, self.sending) = (true, true);
    }

    /// The attempt handed over last has ended; `acted`: AWS may have acted
    /// on it (no answer, or a 5xx).
    pub fn attempted(&mut self, acted: bool) {
        if self.sending {
            self.maybe_acted |= acted;
            self.sending = false;
        }
    }

    /// Where a call whose last attempt failed without an answer from AWS
    /// may have reached, when the ledger knows better than that attempt's
    /// own error (`None`: the error says it). Nothing sent: whatever failed
    /// (credentials, signing), AWS saw nothing. Sent, and the last attempt
    /// could not connect: an earlier one may have been acted on.
    pub fn judge(&self, last_never_connected: bool) -> Option<Reach> {
        match (self.sent, self.maybe_acted) {
            (false, _) => Some(Reach::NotSent),
            (true, true) if last_never_connected => Some(Reach::Unknown),
            _ => None,
        }
    }
}

impl Storable for Ledger {
    type Storer = StoreReplace<Self>;
}

/// The verdict of a call's ledger, carried in its error's source chain.
#[derive(Debug)]
pub struct Verdict {
    pub reach: Reach,
    /// The call ran out of its time (its message says so).
    pub timed_out: bool,
    source: BoxError,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.source.fmt(f)
    }
}

impl std::error::Error for Verdict {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
}

/// The verdict marked on an error, if any.
pub fn verdict<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Verdict> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(v) = e.downcast_ref::<Verdict>() {
            return Some(v);
        }
        next = e.source();
    }
    None
}

/// Keeps each call's ledger, and asks the gate before each attempt is sent.
#[derive(Clone, Default)]
pub struct Interceptor {
    gate: std::sync::Arc<std::sync::RwLock<Option<Gate>>>,
}

impl std::fmt::Debug for Interceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("reach::Interceptor")
    }
}

impl Interceptor {
    /// Every attempt asks `gate` first, as late as can be (right before it
    /// is sent), and fails unsent when it says no; `None` lets all through.
    pub fn set_gate(&self, gate: Option<Gate>) {
        *self.gate.write().unwrap_or_else(|e| e.into_inner()) = gate;
    }

    pub(crate) fn gate_allows(&self) -> Result<(), BoxError> {
        let gate = self.gate.read().unwrap_or_else(|e| e.into_inner()).clone();
        match gate {
            Some(open) => open().map_err(BoxError::from),
            None => Ok(()),
        }
    }
}

fn ledger(cfg: &ConfigBag) -> Ledger {
    cfg.load::<Ledger>().cloned().unwrap_or_default()
}

impl Intercept for Interceptor {
    fn name(&self) -> &'static str {
        "stackctl::reach"
    }

    fn read_before_transmit(
        &self,
        _: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // Refused here, the attempt is not sent, and the ledger says so.
        self.gate_allows()?;
        let mut l = ledger(cfg);
        l.sending();
        cfg.interceptor_state().store_put(l);
        Ok(())
    }

    fn read_after_attempt(
        &self,
        ctx: &FinalizerInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let mut l = ledger(cfg);
        let acted = match (ctx.response(), ctx.output_or_error()) {
            (Some(r), _) => !(400..500).contains(&r.status().as_u16()),
            (None, Some(Err(e))) => !super::never_connected(e),
            (None, _) => true,
        };
        l.attempted(acted);
        cfg.interceptor_state().store_put(l);
        Ok(())
    }

    fn modify_before_completion(
        &self,
        ctx: &mut FinalizerInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let l = ledger(cfg);
        let Some(Err(err)) = ctx.output_or_error_mut() else {
            return Ok(());
        };
        // AWS's own answer (a code, a status) says what it did with the last
        // attempt; only errors without one are judged by the ledger.
        if err.is_operation_error() || err.is_response_error() {
            return Ok(());
        }
        // Otherwise the last attempt's own error says it (a timeout or a
        // dropped connection: maybe acted on).
        let Some(reach) = l.judge(super::never_connected(err)) else {
            return Ok(());
        };
        let timed_out = err.is_timeout_error();
        let last = std::mem::replace(err, OrchestratorError::other("(replaced)"));
        let source: BoxError = Box::new(last);
        *err = OrchestratorError::connector(ConnectorError::other(
            Box::new(Verdict {
                reach,
                timed_out,
                source,
            }),
            None,
        ));
        Ok(())
    }
}

/// Whether the run may still make calls: the state's lock confirmed
/// recently. Set while a run changes things with a lock another run can
/// force away.
pub type Gate = std::sync::Arc<dyn Fn() -> Result<(), String> + Send + Sync>;
