//! Routing of Graph paths (`/{id}` and `/{id}/{edge}`) to the Page and Instagram handlers,
//! by what the id names.

use actix_web::{web, HttpRequest, HttpResponse};

use super::graph::{graph_error, no_object, params};
use super::{guard, instagram, pages, MetaEndpoint, MetaState, Usage};

/// What an id in a Graph path names.
enum Node {
    Me,
    User,
    Page,
    Instagram,
    Container,
    IgMedia,
    Post,
    Photo,
    Video,
    Unknown,
}

fn node(state: &MetaState, id: &str) -> Node {
    if id == "me" {
        return Node::Me;
    }
    let inner = state.lock();
    if inner.users.contains_key(id) {
        Node::User
    } else if inner.page(id).is_some() {
        Node::Page
    } else if inner.ig_account(id).is_some() {
        Node::Instagram
    } else if inner.containers.contains_key(id) {
        Node::Container
    } else if inner.ig_media.iter().any(|m| m.id == id) {
        Node::IgMedia
    } else if inner.posts.iter().any(|p| p.id == id) {
        Node::Post
    } else if inner.photos.iter().any(|p| p.id == id) {
        Node::Photo
    } else if inner.videos.iter().any(|v| v.id == id) {
        Node::Video
    } else {
        Node::Unknown
    }
}

fn segment(req: &HttpRequest, name: &str) -> String {
    req.match_info().get(name).unwrap_or_default().to_owned()
}

/// An id nobody can see: authenticate first (a bad token is reported as such), then say so.
async fn unknown(state: &MetaState, req: &HttpRequest, id: &str) -> HttpResponse {
    let p = params(req, &[]);
    match guard(state, req, &p, MetaEndpoint::PageObject, Usage::of).await {
        Ok(_) => no_object(id),
        Err(resp) => resp,
    }
}

fn unsupported_edge(edge: &str) -> HttpResponse {
    graph_error(
        actix_web::http::StatusCode::BAD_REQUEST,
        &format!("(#100) Tried accessing nonexisting field ({edge})"),
        "OAuthException",
        100,
        None,
    )
}

/// `GET /{v}/{id}`.
pub(crate) async fn get_object(state: web::Data<MetaState>, req: HttpRequest) -> HttpResponse {
    let id = segment(&req, "id");
    match node(&state, &id) {
        Node::Me | Node::User => pages::me(&state, &req, &id).await,
        Node::Page => pages::get_page(&state, &req, &id).await,
        Node::Instagram => instagram::get_account(&state, &req, &id).await,
        Node::Container => instagram::container_status(&state, &req, &id).await,
        Node::IgMedia => instagram::get_media(&state, &req, &id).await,
        Node::Post => pages::get_post(&state, &req, &id).await,
        Node::Photo => pages::get_photo(&state, &req, &id).await,
        Node::Video => pages::get_video(&state, &req, &id).await,
        Node::Unknown => unknown(&state, &req, &id).await,
    }
}

/// `GET /{v}/{id}/{edge}`.
pub(crate) async fn get_edge(state: web::Data<MetaState>, req: HttpRequest) -> HttpResponse {
    let id = segment(&req, "id");
    let edge = segment(&req, "edge");
    match (node(&state, &id), edge.as_str()) {
        (Node::Me | Node::User, "accounts") => pages::accounts(&state, &req, &id).await,
        (Node::Me | Node::User, "permissions") => pages::permissions(&state, &req, &id).await,
        (Node::Me | Node::Page, "feed" | "published_posts" | "posts") => {
            pages::list_feed(&state, &req, &id).await
        }
        (Node::Me | Node::Page, "videos") => pages::list_videos(&state, &req, &id).await,
        (Node::Instagram, "media") => instagram::list_media(&state, &req, &id, false).await,
        (Node::Instagram, "stories") => instagram::list_media(&state, &req, &id, true).await,
        (Node::Instagram, "content_publishing_limit") => {
            instagram::publishing_limit(&state, &req, &id).await
        }
        (Node::Unknown, _) => unknown(&state, &req, &id).await,
        _ => unsupported_edge(&edge),
    }
}

/// `POST /{v}/{id}/{edge}`.
pub(crate) async fn post_edge(
    state: web::Data<MetaState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let id = segment(&req, "id");
    let edge = segment(&req, "edge");
    match (node(&state, &id), edge.as_str()) {
        (Node::Me | Node::Page, "feed") => pages::create_post(&state, &req, &id, &body).await,
        (Node::Me | Node::Page, "photos") => pages::upload_photo(&state, &req, &id, &body).await,
        (Node::Me | Node::Page, "videos") => pages::videos(&state, &req, &id, &body).await,
        (Node::Me | Node::Page, "video_reels") => pages::reels(&state, &req, &id, &body).await,
        (Node::Instagram, "media") => instagram::create_container(&state, &req, &id, &body).await,
        (Node::Instagram, "media_publish") => instagram::publish(&state, &req, &id, &body).await,
        (Node::Unknown, _) => unknown(&state, &req, &id).await,
        _ => unsupported_edge(&edge),
    }
}

/// `DELETE /{v}/{user-id}/permissions/{permission}`.
pub(crate) async fn revoke_permission(
    state: web::Data<MetaState>,
    req: HttpRequest,
) -> HttpResponse {
    let id = segment(&req, "id");
    match node(&state, &id) {
        Node::Me | Node::User => {
            pages::revoke_permission(&state, &req, &id, &segment(&req, "permission")).await
        }
        Node::Unknown => unknown(&state, &req, &id).await,
        _ => unsupported_edge("permissions"),
    }
}
