//! `GET /2/users/me`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::{finish, guard, Problem, XEndpoint, XState};

/// `GET /2/users/me`: the authenticated account.
pub(crate) async fn me(state: web::Data<XState>, req: HttpRequest) -> HttpResponse {
    let ctx = match guard(
        &state,
        &req,
        XEndpoint::UsersMe,
        &["tweet.read", "users.read"],
    )
    .await
    {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    let user = state.lock().users.get(&ctx.caller.user_id).cloned();
    let resp = match user {
        Some(u) => HttpResponse::Ok().json(json!({
            "data": { "id": u.id, "name": u.name, "username": u.username }
        })),
        // Grants are only ever made for existing accounts.
        None => Problem::unauthorized().response(),
    };
    finish(ctx, resp).await
}
