//! The HTTP server and the process lifecycle.
use std::net::TcpListener;

use actix_web::{web, App, HttpMessage, HttpServer};
use tokio::task::JoinHandle;

use crate::config::Role;
use crate::runtime::Herald;

/// A running Herald: its HTTP address and background tasks.
pub struct Running {
    pub url: String,
    pub herald: Herald,
    server: actix_web::dev::ServerHandle,
    tasks: Vec<JoinHandle<()>>,
    server_task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Stops the server and workers, waiting for them to finish their current step.
    pub async fn stop(self) {
        self.herald.shutdown.cancel();
        self.server.stop(true).await;
        let _ = self.server_task.await;
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Starts the API (unless `role` is worker) on `listener` and the workers (unless api).
pub async fn start(herald: Herald, listener: TcpListener, role: Role) -> anyhow::Result<Running> {
    // Installed before the workers start, so what they record from their first moment counts.
    crate::metrics::handle();
    let tasks = if role == Role::Api {
        Vec::new()
    } else {
        herald.spawn_workers().await
    };
    let url = format!("http://{}", listener.local_addr()?);
    let data = web::Data::new(herald.clone());
    let auth = web::Data::new(herald.auth.clone());
    let limits = web::Data::new(herald.api_limits.clone());
    let mut tasks = tasks;
    if role != Role::Worker {
        tasks.push(tokio::spawn(forget_idle_users(
            herald.api_limits.clone(),
            herald.shutdown.clone(),
        )));
    }
    let workers = if role == Role::Worker { 1 } else { 2 };
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(auth.clone())
            .app_data(limits.clone())
            .wrap_fn(|req, service| {
                use actix_web::dev::Service;
                use tracing::Instrument;
                // One id per request: the caller's X-Request-Id, else a new one. It names the
                // request's span (so every log line of it carries the id), correlates the
                // events it causes, and is echoed in the response.
                let id = crate::auth::RequestId::of(req.request());
                req.extensions_mut().insert(id.clone());
                let span = tracing::info_span!(
                    "request",
                    request_id = %id.0,
                    method = %req.method(),
                    path = %req.path()
                );
                let started = std::time::Instant::now();
                let method = req.method().to_string();
                let response = service.call(req).instrument(span);
                async move {
                    let mut response = response.await?;
                    let route = response
                        .request()
                        .match_pattern()
                        .unwrap_or_else(|| "unmatched".to_owned());
                    crate::metrics::record_request(
                        &method,
                        &route,
                        response.status().as_u16(),
                        started.elapsed().as_secs_f64(),
                    );
                    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&id.0) {
                        response.headers_mut().insert(
                            actix_web::http::header::HeaderName::from_static("x-request-id"),
                            value,
                        );
                    }
                    let standing = response
                        .request()
                        .extensions()
                        .get::<crate::rate_limit::Standing>()
                        .cloned();
                    if let Some(standing) = standing {
                        for (name, value) in standing.headers() {
                            if let Ok(value) =
                                actix_web::http::header::HeaderValue::from_str(&value)
                            {
                                response.headers_mut().insert(
                                    actix_web::http::header::HeaderName::from_static(name),
                                    value,
                                );
                            }
                        }
                    }
                    Ok(response)
                }
            })
            .wrap(tracing_actix())
            .configure(crate::routes::configure)
    })
    .workers(workers)
    .disable_signals()
    .listen(listener)?
    .run();
    let handle = server.handle();
    let server_task = tokio::spawn(server);
    Ok(Running {
        url,
        herald,
        server: handle,
        tasks,
        server_task,
    })
}

/// Keeps the rate limiters' tables to the users active in the last minutes.
async fn forget_idle_users(
    limits: crate::rate_limit::ApiRateLimits,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => limits.forget_idle(),
        }
    }
}

fn tracing_actix() -> actix_web::middleware::Logger {
    // Paths and statuses only: query strings may carry OAuth codes, so they are not logged.
    // actix's Logger has no method placeholder (`%m` printed a literal "m"), hence METHOD.
    actix_web::middleware::Logger::new("%{METHOD}xi %U %s %Dms %{x-request-id}o")
        .custom_request_replace("METHOD", |req| req.method().to_string())
        .exclude("/healthz")
}
