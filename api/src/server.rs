//! The HTTP server and the process lifecycle.
use std::net::TcpListener;

use actix_web::{web, App, HttpServer};
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
    let tasks = if role == Role::Api {
        Vec::new()
    } else {
        herald.spawn_workers().await
    };
    let url = format!("http://{}", listener.local_addr()?);
    let data = web::Data::new(herald.clone());
    let auth = web::Data::new(herald.auth.clone());
    let workers = if role == Role::Worker { 1 } else { 2 };
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(auth.clone())
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

fn tracing_actix() -> actix_web::middleware::Logger {
    // Paths and statuses only: query strings may carry OAuth codes, so they are not logged.
    actix_web::middleware::Logger::new("%m %U %s %Dms").exclude("/healthz")
}
