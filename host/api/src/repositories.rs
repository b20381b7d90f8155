//! `GET`, `POST` and `DELETE /v1/repositories` and `GET /v1/image-rules`:
//! the repositories the platform knows and how images map to them, as the
//! CLI's `repos` command keeps them. They are global, not a tenant's: any
//! valid token reads them, only an admin token changes them.

use crate::error::{ApiError, ErrorBody};
use crate::state::Api;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use scanner_store::{ImageMappingRow, NewRepository, RepositoryRow, StoreError, TokenScope};
use serde::{Deserialize, Serialize};

/// `{"repositories": [...]}`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct RepositoryList {
    /// The known repositories, in URL order.
    repositories: Vec<RepositoryRow>,
}

/// `{"repository": {...}}`: one repository as listed.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct RepositoryAnswer {
    /// The repository, with all its image rules.
    repository: RepositoryRow,
}

/// `{"rules": [...]}`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ImageRuleList {
    /// Every explicit rule, then every image mapped by its name.
    rules: Vec<ImageMappingRow>,
}

/// The body of `POST /v1/repositories`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddRepository {
    /// The repository's URL, `https://HOST/ORG/REPO`.
    url: String,
    /// Images built from it (`REGISTRY/REPOSITORY`, a tag or digest is
    /// ignored); adding a known repository again adds these rules.
    #[serde(default)]
    images: Vec<String>,
}

/// The query of `DELETE /v1/repositories`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RemoveRepository {
    /// The repository's URL, in any form it was or could have been added.
    url: String,
}

/// Refuses a token that is not an admin's.
fn require_admin(scope: &TokenScope, what: &str) -> Result<(), ApiError> {
    if scope.admin {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "{what} needs an admin token; this token reaches only its tenants"
        )))
    }
}

/// A store error of a repository request: input the store refuses is the
/// request's fault (400), an unknown repository is 404.
fn repository_error(error: StoreError) -> ApiError {
    match error {
        StoreError::Invalid(message) => ApiError::bad_request(message),
        StoreError::UnknownRepository(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "not-found", error.to_string())
        }
        other => other.into(),
    }
}

/// The known repositories with their image rules.
#[utoipa::path(
    get,
    path = "/repositories",
    tag = "repositories",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The known repositories", body = RepositoryList),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
pub(crate) async fn list(State(api): State<Api>) -> Result<Json<RepositoryList>, ApiError> {
    let repositories = api.db().repositories()?;
    Ok(Json(RepositoryList { repositories }))
}

/// Adds a repository (or rules to a known one) and answers it as listed
/// (201); image findings it now decides are mapped to it.
#[utoipa::path(
    post,
    path = "/repositories",
    tag = "repositories",
    security(("bearer" = [])),
    request_body = AddRepository,
    responses(
        (status = 201, description = "Added (or its image rules added)", body = RepositoryAnswer),
        (status = 400, description = "Bad input, named in the message", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Needs an admin token", body = ErrorBody),
    )
)]
pub(crate) async fn add(
    State(api): State<Api>,
    Extension(scope): Extension<TokenScope>,
    body: Result<Json<AddRepository>, JsonRejection>,
) -> Result<(StatusCode, Json<RepositoryAnswer>), ApiError> {
    require_admin(&scope, "adding a repository")?;
    let Json(body) = body.map_err(|e| {
        ApiError::bad_request(format!(
            "{}; send {{\"url\": \"https://HOST/ORG/REPO\", \"images\": [\"REGISTRY/REPOSITORY\"]}}",
            e.body_text()
        ))
    })?;
    let repository = NewRepository::parse(&body.url, &body.images).map_err(repository_error)?;
    let store = api.db();
    store
        .add_repositories(std::slice::from_ref(&repository))
        .map_err(repository_error)?;
    // Listed under the URL it was first added with, which may be another
    // form of this one.
    let repository = store
        .repositories()?
        .into_iter()
        .find(|row| scanner_store::normalize_repo_url(&row.url) == repository.url_norm())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the repository just added is not listed",
            )
        })?;
    Ok((StatusCode::CREATED, Json(RepositoryAnswer { repository })))
}

/// Removes a repository and its image rules (204); the image findings it
/// held go to whatever rule matches them now. 404 when it is not known.
#[utoipa::path(
    delete,
    path = "/repositories",
    tag = "repositories",
    security(("bearer" = [])),
    params(RemoveRepository),
    responses(
        (status = 204, description = "Removed, with its image rules"),
        (status = 400, description = "Bad input, named in the message", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Needs an admin token", body = ErrorBody),
        (status = 404, description = "Unknown repository", body = ErrorBody),
    )
)]
pub(crate) async fn remove(
    State(api): State<Api>,
    Extension(scope): Extension<TokenScope>,
    query: Result<Query<RemoveRepository>, QueryRejection>,
) -> Result<StatusCode, ApiError> {
    require_admin(&scope, "removing a repository")?;
    let Query(query) = query.map_err(|e| {
        ApiError::bad_request(format!(
            "{}; name the repository: DELETE /v1/repositories?url=https://HOST/ORG/REPO",
            e.body_text()
        ))
    })?;
    api.db()
        .remove_repository(&query.url)
        .map_err(repository_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// How images map to repositories, with the findings each rule holds.
#[utoipa::path(
    get,
    path = "/image-rules",
    tag = "repositories",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "How images map to repositories", body = ImageRuleList),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
pub(crate) async fn rules(State(api): State<Api>) -> Result<Json<ImageRuleList>, ApiError> {
    let rules = api.db().image_mappings()?;
    Ok(Json(ImageRuleList { rules }))
}
