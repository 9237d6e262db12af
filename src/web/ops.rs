//! Operations endpoints: liveness, readiness and Prometheus metrics.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::error::AppError;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(metrics_text))
}

/// The process is up and answering.
async fn healthz() -> &'static str {
    "ok\n"
}

/// The database answers; load balancers route here only then.
async fn readyz(State(state): State<AppState>) -> Response {
    let ping = async {
        let mut conn = state.db.acquire().await?;
        crate::store::system::ping(&mut conn).await
    };
    match ping.await {
        Ok(_) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            AppError::Database(sqlx::Error::PoolTimedOut).into_response()
        }
    }
}

/// Prometheus text format: request counts and latencies by route, and the pool's state.
async fn metrics_text(State(state): State<AppState>) -> Response {
    metrics::gauge!("db_pool_connections").set(state.db.size() as f64);
    metrics::gauge!("db_pool_idle_connections").set(state.db.num_idle() as f64);
    metrics::gauge!("db_pool_max_connections").set(state.config.database.max_connections as f64);
    let body = crate::telemetry::prometheus().render();
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    resp
}
