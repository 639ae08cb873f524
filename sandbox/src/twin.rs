//! What every twin shares: its state behind one [`TwinLock`], the fault queue and request log in
//! that state, a snapshot of it, and the control routes over them (`/_sandbox/faults`,
//! `/_sandbox/state`), which are not part of any platform. A twin implements [`Twin`] and
//! builds its scope with [`scope`], then adds its own routes.

use std::fmt::Debug;
use std::hash::Hash;

use actix_web::{web, HttpResponse};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::faults::{Fault, FaultQueue, QueuedFault};
use crate::inspect::RequestLog;
use crate::lock::TwinLock;

/// A platform twin's shared state.
pub(crate) trait Twin: Send + Sync + Sized + 'static {
    /// What the lock guards.
    type Inner;
    /// The endpoints faults are queued for (`any` is the wildcard).
    type Endpoint: Copy + Eq + Hash + Debug + Serialize + DeserializeOwned + Send + Sync + 'static;
    /// What `GET /_sandbox/state` answers.
    type Snapshot: Serialize;

    fn state_lock(&self) -> &TwinLock<Self::Inner>;
    fn faults(inner: &mut Self::Inner) -> &mut FaultQueue<Self::Endpoint>;
    fn requests(inner: &mut Self::Inner) -> &mut RequestLog;
    /// A read-only copy of the state, for tests and `GET /_sandbox/state`.
    fn snapshot(&self) -> Self::Snapshot;

    /// The fault the next request to `endpoint` meets, if any (consumed).
    fn take_fault(&self, endpoint: Self::Endpoint) -> Option<Fault> {
        Self::faults(&mut self.state_lock().lock()).take(endpoint)
    }

    /// Queues `fault` for the next `times` requests to `endpoint`.
    fn inject_fault(&self, endpoint: Self::Endpoint, fault: Fault, times: u32) {
        Self::faults(&mut self.state_lock().lock()).push(endpoint, fault, times);
    }

    /// Drops every queued fault; returns how many there were.
    fn clear_faults(&self) -> usize {
        Self::faults(&mut self.state_lock().lock()).clear()
    }

    fn pending_faults(&self) -> Vec<QueuedFault<Self::Endpoint>> {
        Self::faults(&mut self.state_lock().lock()).pending()
    }

    /// Records an arriving request; returns its sequence number for [`Twin::log_finish`].
    fn log_start(&self, method: &str, path: &str) -> u64 {
        Self::requests(&mut self.state_lock().lock()).start(method, path)
    }

    fn log_finish(&self, seq: u64, status: u16) {
        Self::requests(&mut self.state_lock().lock()).finish(seq, status);
    }
}

/// The twin's scope under `path`: every request but the control routes recorded in its request
/// log, its state as app data, and the shared control routes.
pub(crate) fn scope<T: Twin>(
    path: &'static str,
    state: web::Data<T>,
) -> actix_web::Scope<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<actix_web::body::BoxBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    crate::inspect::recorded_scope(
        path,
        state.clone().into_inner(),
        T::log_start,
        T::log_finish,
    )
    .app_data(state)
    .route("/_sandbox/faults", web::post().to(add_fault::<T>))
    .route("/_sandbox/faults", web::get().to(list_faults::<T>))
    .route("/_sandbox/faults", web::delete().to(clear_faults::<T>))
    .route("/_sandbox/state", web::get().to(state_dump::<T>))
}

/// Body of `POST /_sandbox/faults`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, bound = "E: DeserializeOwned")]
struct FaultRequest<E> {
    endpoint: E,
    fault: Fault,
    #[serde(default = "one")]
    times: u32,
}

/// `times` when none is given.
pub(crate) fn one() -> u32 {
    1
}

/// 400 with `{"error": detail}`: a control request the twin cannot take.
pub(crate) fn control_error(detail: String) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({ "error": detail }))
}

/// `POST /_sandbox/faults`: queues a fault.
async fn add_fault<T: Twin>(state: web::Data<T>, body: web::Bytes) -> HttpResponse {
    let req: FaultRequest<T::Endpoint> = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return control_error(format!("invalid fault request: {e}")),
    };
    if let Err(e) = req.fault.validate() {
        return control_error(e);
    }
    state.inject_fault(req.endpoint, req.fault.clone(), req.times);
    HttpResponse::Ok().json(json!({
        "queued": true,
        "endpoint": req.endpoint,
        "fault": req.fault,
        "times": req.times,
    }))
}

/// `GET /_sandbox/faults`: faults still queued.
async fn list_faults<T: Twin>(state: web::Data<T>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "faults": state.pending_faults() }))
}

/// `DELETE /_sandbox/faults`: drops every queued fault.
async fn clear_faults<T: Twin>(state: web::Data<T>) -> HttpResponse {
    let cleared = state.clear_faults();
    HttpResponse::Ok().json(json!({ "cleared": cleared }))
}

/// `GET /_sandbox/state`: the twin's read-only state dump.
async fn state_dump<T: Twin>(state: web::Data<T>) -> HttpResponse {
    HttpResponse::Ok().json(state.snapshot())
}
