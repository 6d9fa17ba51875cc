//! `GET /api/openapi.json`: the OpenAPI 3.1 description of every route, so clients can
//! be generated and the API fuzzed. It is generated from the handlers' annotations and
//! the types they read and answer ([`utoipa`]); what every route of a kind shares —
//! credentials, error answers, the webhook's `/batch` and key-in-URL twins — is added
//! here once, by [`Contract`].
//!
//! Like `/healthz` it needs no credential: it describes the API and holds no data.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::schema::AnyOfBuilder;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, OpenApi as Document, Ref, RefOr, Required, Response as Answer,
    ResponseBuilder,
};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

use super::{admin, ingest, ops, read};
use crate::http::{ApiError, ErrorBody};

/// The description, serialized once.
static DESCRIPTION: LazyLock<Result<String, String>> =
    LazyLock::new(|| ApiDoc::openapi().to_json().map_err(|e| e.to_string()));

/// `GET /api/openapi.json` → this server's OpenAPI 3.1 description.
#[utoipa::path(get, path = "/api/openapi.json", tag = "ops", operation_id = "getOpenApi",
    responses((status = 200, description = "This document", body = serde_json::Value)))]
pub async fn document() -> Result<Response, ApiError> {
    let text = DESCRIPTION.as_ref().map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], text.as_str()).into_response())
}

/// The description as a value, for the server and its tests.
pub fn description() -> Document {
    ApiDoc::openapi()
}

/// The routes the annotations describe; [`Contract`] adds the rest.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "datapool",
        description = "A single-binary data hub: webhooks, an ingest API, SQL and file pollers into a live DataPool, read by displays and dashboards, with change notifications pushed to subscribers.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        ops::healthz,
        ops::readyz,
        ops::metrics,
        document,
        ingest::webhook,
        ingest::bulk,
        ingest::ingest_api,
        read::streams,
        read::items,
        read::item,
        read::history,
        read::delete_item,
        read::events,
        admin::connectors::list,
        admin::connectors::create,
        admin::connectors::show,
        admin::connectors::update,
        admin::connectors::delete,
        admin::connectors::enable,
        admin::connectors::disable,
        admin::connectors::rotate_key,
        admin::connectors::logs,
        admin::connectors::test,
        admin::upload::upload,
        admin::monitoring::monitoring,
        admin::read_keys::list,
        admin::read_keys::create,
        admin::read_keys::delete,
        admin::backup::backup,
        admin::streams::show,
        admin::streams::update,
        admin::subscriptions::list,
        admin::subscriptions::create,
        admin::subscriptions::show,
        admin::subscriptions::update,
        admin::subscriptions::delete,
        admin::subscriptions::activate,
        admin::subscriptions::deactivate,
        admin::subscriptions::rotate_secret,
        admin::subscriptions::deliveries,
        admin::subscriptions::resend,
    ),
    components(schemas(ErrorBody)),
    modifiers(&Contract),
    tags(
        (name = "ops", description = "Probes, metrics and this description: no credential unless configured"),
        (name = "ingest", description = "Pushing data in (SPEC §3): an ingest key as bearer token, HTTP Basic password, or in the URL, as the connector allows"),
        (name = "read", description = "Reading the DataPool (SPEC §5): a read key or the admin token"),
        (name = "admin", description = "The admin API (SPEC §1.2, §7): the admin token"),
    ),
)]
struct ApiDoc;

/// The kinds of route, by tag: who may call them and how they can fail.
const KINDS: [(&str, &[&str], &[u16]); 4] = [
    ("ops", &[], &[]),
    (
        "ingest",
        &["ingestKey", "ingestKeyBasic"],
        &[400, 401, 403, 404, 408, 409, 413, 415, 429, 503],
    ),
    (
        "read",
        &["adminToken", "readKey"],
        &[400, 401, 403, 404, 429, 503],
    ),
    (
        "admin",
        &["adminToken"],
        &[400, 401, 403, 404, 408, 409, 413, 415, 429, 503],
    ),
];

/// The webhook routes documented once, by their handler, and their twins (SPEC §3.3,
/// §3.4): the same operation under another path, its id, and whether the ingest key
/// is in the path.
const TWINS: [(&str, &str, &str, bool); 4] = [
    (
        "/api/webhook/{stream}",
        "/api/webhook/{stream}/batch",
        "pushBatch",
        false,
    ),
    (
        "/api/webhook/{stream}",
        "/api/webhook/{stream}/k/{key}",
        "pushWebhookKeyInUrl",
        true,
    ),
    (
        "/api/webhook/{stream}",
        "/api/webhook/{stream}/k/{key}/batch",
        "pushBatchKeyInUrl",
        true,
    ),
    (
        "/api/webhook/{stream}/bulk",
        "/api/webhook/{stream}/k/{key}/bulk",
        "pushBulkKeyInUrl",
        true,
    ),
];

/// The path parameters, by the start of the paths they are in (the first match
/// counts) and their name, with what they mean.
const PATH_PARAMETERS: [(&str, &str, &str); 7] = [
    ("/api/admin/connectors/", "id", "The connector's id"),
    ("/api/admin/subscriptions/", "id", "The subscription's id"),
    ("/api/admin/read-keys/", "id", "The read key's id"),
    ("/api/streams/", "id", "The item's id"),
    ("/", "stream", "The stream's name; for a push, the ingest key's connector's stream"),
    ("/", "delivery", "The delivery's id, from the delivery log"),
    (
        "/",
        "key",
        "The full ingest key, where the connector sets `auth.keyInUrl` (it is redacted in every log)",
    ),
];

/// The request headers every push route reads, with what they mean. (Signature
/// headers depend on the connector's scheme, and are in its documentation.)
const PUSH_HEADERS: [(&str, &str); 2] = [
    (
        "Idempotency-Key",
        "1-255 printable ASCII characters: a repeat within the connector's window is answered as the first request was, and not processed again",
    ),
    (
        "X-Item-Key",
        "The (dotted) field whose value identifies each item of a webhook or bulk body; default the connector's `itemKey`, else the item's position",
    ),
];

/// What the routes of a kind share, added to the annotated operations.
struct Contract;

impl Modify for Contract {
    fn modify(&self, openapi: &mut Document) {
        add_security_schemes(openapi);
        add_twins(openapi);
        for (path, item) in openapi.paths.paths.iter_mut() {
            for operation in operations(item) {
                add_parameters(path, operation);
                complete(operation);
            }
        }
    }
}

/// The credentials SPEC §2 defines, as security schemes.
fn add_security_schemes(openapi: &mut Document) {
    let components = openapi.components.get_or_insert_with(Default::default);
    let bearer = |description: &str| {
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(description))
                .build(),
        )
    };
    let schemes = [
        (
            "adminToken",
            bearer("The admin token `at_…` (written to `<data-dir>/admin-token` on first start)"),
        ),
        ("readKey", bearer("A read key `rk_…`")),
        ("ingestKey", bearer("A connector's ingest key `ik_…`")),
        (
            "ingestKeyBasic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "HTTP Basic with any user name and the full ingest key as password, where the connector sets `auth.basic`",
                    ))
                    .build(),
            ),
        ),
        (
            "readKeyQuery",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "key",
                "A read key as `?key=`, only for the event stream (EventSource cannot set headers)",
            ))),
        ),
        (
            "metricsToken",
            bearer("The token of `metrics_token_file`, when the configuration sets one"),
        ),
    ];
    for (name, scheme) in schemes {
        components.add_security_scheme(name, scheme);
    }
}

/// Adds each of [`TWINS`] as a copy of its documented operation.
fn add_twins(openapi: &mut Document) {
    for (original, twin, operation_id, key_in_path) in TWINS {
        let Some(mut operation) = openapi
            .paths
            .paths
            .get(original)
            .and_then(|item| item.post.clone())
        else {
            continue;
        };
        operation.operation_id = Some(operation_id.to_owned());
        if key_in_path {
            // The key in the path is the credential.
            operation.security = Some(vec![SecurityRequirement::default()]);
        }
        let mut item = PathItem::default();
        item.post = Some(operation);
        openapi.paths.paths.insert(twin.to_owned(), item);
    }
}

/// Declares the parameters of `path`'s template ([`PATH_PARAMETERS`]) on `operation`,
/// and on a push route the headers it reads ([`PUSH_HEADERS`]).
fn add_parameters(path: &str, operation: &mut Operation) {
    let names = path
        .split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'));
    let in_path = names.filter_map(|name| {
        PATH_PARAMETERS
            .iter()
            .find(|(prefix, known, _)| *known == name && path.starts_with(prefix))
            .map(|(_, _, meaning)| parameter(name, ParameterIn::Path, Required::True, meaning))
    });
    let is_push = operation
        .tags
        .as_ref()
        .is_some_and(|tags| tags.iter().any(|tag| tag == "ingest"));
    let headers = PUSH_HEADERS
        .iter()
        .filter(|_| is_push)
        .map(|(name, meaning)| parameter(name, ParameterIn::Header, Required::False, meaning));
    let declared = operation.parameters.get_or_insert_with(Vec::new);
    let added: Vec<Parameter> = in_path.chain(headers).collect();
    declared.splice(0..0, added);
}

/// A string parameter.
fn parameter(name: &str, place: ParameterIn, required: Required, meaning: &str) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(place)
        .required(required)
        .description(Some(meaning))
        .schema(Some(String::schema()))
        .build()
}

/// Every operation of a path.
fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.post,
        &mut item.put,
        &mut item.patch,
        &mut item.delete,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// Gives `operation` its kind's credentials and error answers, and every error answer
/// the error body and headers.
fn complete(operation: &mut Operation) {
    let tag = operation
        .tags
        .as_ref()
        .and_then(|tags| tags.first())
        .cloned()
        .unwrap_or_default();
    let (schemes, errors) = KINDS
        .iter()
        .find(|(kind, _, _)| *kind == tag)
        .map_or((&[][..], &[][..]), |(_, schemes, errors)| {
            (*schemes, *errors)
        });
    if operation.security.is_none() && !schemes.is_empty() {
        operation.security = Some(
            schemes
                .iter()
                .map(|scheme| SecurityRequirement::new(*scheme, Vec::<String>::new()))
                .collect(),
        );
    }
    let responses = &mut operation.responses.responses;
    if tag == "ingest" {
        if let Some(RefOr::T(accepted)) = responses.get("202").cloned() {
            let mut ok = accepted;
            ok.description = format!(
                "{} (a connector set to `successStatus: 200`)",
                ok.description
            );
            responses.insert("200".to_owned(), RefOr::T(ok));
        }
        for answer in responses.values_mut() {
            if let RefOr::T(answer) = answer {
                admit_replays(answer);
            }
        }
    }
    for status in errors {
        responses
            .entry(status.to_string())
            .or_insert_with(|| RefOr::T(Answer::new(reason(*status))));
    }
    for (status, answer) in responses.iter_mut() {
        let status: u16 = status.parse().unwrap_or_default();
        if let RefOr::T(answer) = answer {
            if status >= 400 && answer.content.is_empty() {
                *answer = error_answer(status, &answer.description);
            }
            answer.headers.insert(
                "X-Request-Id".to_owned(),
                HeaderBuilder::new()
                    .schema(String::schema())
                    .description(Some("The request's id, also in every error body"))
                    .build(),
            );
        }
    }
}

/// A push route's success answer also admits a replay (SPEC §3.1): a repeated
/// `Idempotency-Key` gets the first request's body, which another push route of the
/// connector may have answered (a webhook's body to a bulk import's retry).
fn admit_replays(answer: &mut Answer) {
    let first = RefOr::Ref(Ref::from_schema_name(ingest::AcceptedBody::name()));
    for content in answer.content.values_mut() {
        let Some(own) = content.schema.take() else {
            continue;
        };
        content.schema = Some(if own == first {
            own
        } else {
            AnyOfBuilder::new().item(own).item(first.clone()).into()
        });
    }
    if !answer.content.is_empty() {
        answer.headers.insert(
            "Idempotent-Replayed".to_owned(),
            HeaderBuilder::new()
                .schema(String::schema())
                .description(Some(
                    "`true` on a replay: the answer to the first request with this `Idempotency-Key`, which was not processed again",
                ))
                .build(),
        );
    }
}

/// An error answer: SPEC's error body, with the headers that say what to do next.
fn error_answer(status: u16, description: &str) -> Answer {
    let body = ContentBuilder::new()
        .schema(Some(RefOr::Ref(Ref::from_schema_name(ErrorBody::name()))))
        .build();
    let mut answer = ResponseBuilder::new()
        .description(description)
        .content("application/json", body);
    let hint = match status {
        401 => Some((
            header::WWW_AUTHENTICATE,
            "`Bearer`, and `Basic realm=\"datapool\"` where HTTP Basic is accepted",
        )),
        429 | 503 => Some((header::RETRY_AFTER, "Seconds to wait before trying again")),
        _ => None,
    };
    if let Some((name, meaning)) = hint {
        answer = answer.header(
            name.as_str(),
            HeaderBuilder::new()
                .schema(String::schema())
                .description(Some(meaning))
                .build(),
        );
    }
    answer.build()
}

/// What an error status means on this API, with its code (SPEC §1.2, §3.1).
fn reason(status: u16) -> &'static str {
    match status {
        400 => "`INVALID_PAYLOAD`: a request body or parameter is invalid",
        401 => "`UNAUTHORIZED` (no or a bad credential) or `INVALID_SIGNATURE`",
        403 => "`FORBIDDEN` (a valid credential without the right) or `CONNECTOR_DISABLED`",
        404 => "`NOT_FOUND` (unknown id, stream or item) or `STREAM_NOT_FOUND`",
        408 => "`REQUEST_TIMEOUT`: the body did not arrive in time",
        409 => "`CONFLICT`: the request clashes with what is stored, or with a request still being processed",
        413 => "`PAYLOAD_TOO_LARGE`: the body is over the route's limit",
        415 => "`UNSUPPORTED_MEDIA_TYPE`: the body is not of a type this route reads",
        429 => "`RATE_LIMITED`: too many requests, or failed authentications from this address",
        503 => "`UNAVAILABLE`: overloaded, starting or shutting down",
        _ => "An error",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::description;
    use crate::metrics::{ROUTES, WEB_UI_ROUTES};

    fn document() -> Value {
        serde_json::to_value(description()).expect("the description serializes")
    }

    #[test]
    fn describes_every_route_and_only_those_in_openapi_3_1() {
        let document = document();
        assert!(document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")));
        let described: BTreeSet<&str> = document["paths"]
            .as_object()
            .expect("paths")
            .keys()
            .map(String::as_str)
            .collect();
        let routed: BTreeSet<&str> = ROUTES
            .into_iter()
            .filter(|route| !WEB_UI_ROUTES.contains(route))
            .collect();
        assert_eq!(described, routed);
        for (path, item) in document["paths"].as_object().expect("paths") {
            let templated: BTreeSet<&str> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            for (method, operation) in item.as_object().expect("operations") {
                let declared: BTreeSet<&str> = operation["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["in"] == "path")
                    .filter_map(|p| p["name"].as_str())
                    .collect();
                assert_eq!(declared, templated, "{method} {path}");
            }
        }
    }

    #[test]
    fn every_error_answer_has_the_error_body_and_every_call_its_credentials() {
        let document = document();
        for (path, item) in document["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("operations") {
                let tag = operation["tags"][0].as_str().expect("a tag");
                if tag != "ops" {
                    assert!(
                        operation["security"].is_array(),
                        "{method} {path} has no security"
                    );
                }
                for (status, answer) in operation["responses"].as_object().expect("responses") {
                    if status.as_str() >= "400" {
                        assert_eq!(
                            answer["content"]["application/json"]["schema"]["$ref"],
                            "#/components/schemas/ErrorBody",
                            "{method} {path} {status}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn reads_show_flags_where_documents_take_secrets() {
        let document = document();
        let schemas = &document["components"]["schemas"];
        let view = schemas["ConnectorView"].to_string();
        assert!(
            view.contains("secretSet") && view.contains("valueSet"),
            "{view}"
        );
        assert!(
            view.contains("passwordSet") && view.contains("tokenSet"),
            "{view}"
        );
        let signing = &schemas["Signing"]["properties"];
        assert!(signing.get("secret").is_some() && signing.get("secretSet").is_none());
        let subscription = schemas["SubscriptionView"].to_string();
        assert!(subscription.contains("passwordSet") && !subscription.contains("\"secret\""));
    }
}
