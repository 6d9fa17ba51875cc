//! HTTP requests counted by route template and status: a fixed table of atomics,
//! resolved before the request runs, so counting one costs a route lookup and one
//! relaxed atomic add, with no lock and no allocation.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::StatusCode;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

/// The router's route templates, which are the `route` label's values: a bounded set,
/// whatever paths clients send. Every route of the router belongs here; a path none of
/// them matches (answered 404) is counted as [`OTHER_ROUTE`].
const ROUTES: [&str; 38] = [
    "/healthz",
    "/readyz",
    "/metrics",
    "/api/webhook/{stream}",
    "/api/webhook/{stream}/batch",
    "/api/webhook/{stream}/bulk",
    "/api/webhook/{stream}/k/{key}",
    "/api/webhook/{stream}/k/{key}/batch",
    "/api/webhook/{stream}/k/{key}/bulk",
    "/api/ingest",
    "/api/streams",
    "/api/streams/{stream}/items",
    "/api/streams/{stream}/items/{id}",
    "/api/streams/{stream}/events",
    "/api/admin/connectors",
    "/api/admin/connectors/{id}",
    "/api/admin/connectors/{id}/enable",
    "/api/admin/connectors/{id}/disable",
    "/api/admin/connectors/{id}/rotate-key",
    "/api/admin/connectors/{id}/logs",
    "/api/admin/connectors/{id}/test",
    "/api/admin/connectors/{id}/upload",
    "/api/admin/monitoring",
    "/api/admin/read-keys",
    "/api/admin/read-keys/{id}",
    "/api/admin/backup",
    "/api/admin/subscriptions",
    "/api/admin/subscriptions/{id}",
    "/api/admin/subscriptions/{id}/activate",
    "/api/admin/subscriptions/{id}/deactivate",
    "/api/admin/subscriptions/{id}/rotate-secret",
    "/api/admin/subscriptions/{id}/deliveries",
    "/api/admin/subscriptions/{id}/deliveries/{delivery}/resend",
    "/api/ui/session",
    "/",
    "/assets/{file}",
    "/api/streams/{stream}/items/{id}/history",
    "/api/admin/streams/{stream}",
];

/// The `route` of a request whose path matches no route.
const OTHER_ROUTE: &str = "other";

/// Statuses the server answers with, each counted under its own code; any other is
/// counted under its class ([`CLASSES`]).
const STATUSES: [(u16, &str); 18] = [
    (200, "200"),
    (201, "201"),
    (202, "202"),
    (204, "204"),
    (304, "304"),
    (400, "400"),
    (401, "401"),
    (403, "403"),
    (404, "404"),
    (405, "405"),
    (408, "408"),
    (409, "409"),
    (413, "413"),
    (415, "415"),
    (429, "429"),
    (500, "500"),
    (502, "502"),
    (503, "503"),
];

/// The labels of statuses not in [`STATUSES`], by their first digit.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Status labels in all: the table's width.
const STATUS_SLOTS: usize = STATUSES.len() + CLASSES.len();

/// No slot of its own in [`SLOT_OF_STATUS`].
const UNLISTED: u8 = u8::MAX;

/// The slot of each status code below 600 listed in [`STATUSES`]: one load instead of
/// a search.
const SLOT_OF_STATUS: [u8; 600] = {
    let mut slots = [UNLISTED; 600];
    let mut i = 0;
    while i < STATUSES.len() {
        slots[STATUSES[i].0 as usize] = i as u8;
        i += 1;
    }
    slots
};

/// A request's route, resolved from its path before it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteId(usize);

/// The requests answered, by route and status.
pub struct Requests {
    /// Finds a path's route template, as the router does.
    matcher: matchit::Router<usize>,
    /// One counter per route (and [`OTHER_ROUTE`]) and status slot, row by row.
    counts: Box<[AtomicU64]>,
}

impl fmt::Debug for Requests {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Requests").finish_non_exhaustive()
    }
}

impl Default for Requests {
    fn default() -> Self {
        let mut matcher = matchit::Router::new();
        for (id, template) in ROUTES.iter().enumerate() {
            // The templates are fixed, distinct and well-formed: the unit tests insert
            // them all.
            let _ = matcher.insert(*template, id);
        }
        let counts = (0..(ROUTES.len() + 1) * STATUS_SLOTS)
            .map(|_| AtomicU64::new(0))
            .collect();
        Requests { matcher, counts }
    }
}

impl Requests {
    /// The route of a request to `path`.
    pub fn route(&self, path: &str) -> RouteId {
        RouteId(
            self.matcher
                .at(path)
                .map_or(ROUTES.len(), |found| *found.value),
        )
    }

    /// Counts a request to `route` answered with `status`.
    pub fn count(&self, route: RouteId, status: StatusCode) {
        let slot = status_slot(status.as_u16());
        if let Some(counter) = self.counts.get(route.0 * STATUS_SLOTS + slot) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Requests to `route` answered with `status` so far.
    #[cfg(test)]
    fn counted(&self, route: RouteId, status: StatusCode) -> u64 {
        let slot = status_slot(status.as_u16());
        self.counts[route.0 * STATUS_SLOTS + slot].load(Ordering::Relaxed)
    }

    /// Writes `datapool_http_requests_total`, one series per route and status seen.
    pub(super) fn encode(&self, encoder: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let mut family = encoder.encode_descriptor(
            "datapool_http_requests",
            "HTTP requests answered, by route template and status code (statuses the server does not usually answer with are grouped by class, e.g. 4xx)",
            None,
            MetricType::Counter,
        )?;
        let routes = ROUTES.iter().chain([&OTHER_ROUTE]);
        let statuses = STATUSES.iter().map(|(_, label)| label).chain(&CLASSES);
        for (row, route) in self.counts.chunks(STATUS_SLOTS).zip(routes) {
            for (counter, status) in row.iter().zip(statuses.clone()) {
                let value = counter.load(Ordering::Relaxed);
                if value > 0 {
                    let labels = [("route", *route), ("status", *status)];
                    family
                        .encode_family(&labels)?
                        .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
                }
            }
        }
        Ok(())
    }
}

/// The table column of status `code`.
fn status_slot(code: u16) -> usize {
    match SLOT_OF_STATUS.get(usize::from(code)) {
        Some(&slot) if slot != UNLISTED => usize::from(slot),
        _ => STATUSES.len() + usize::from(code / 100).clamp(1, CLASSES.len()) - 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_is_its_own_route_and_unknown_paths_are_other() {
        let mut matcher = matchit::Router::new();
        for template in ROUTES {
            matcher
                .insert(template, ())
                .expect("a valid, distinct template");
        }
        let requests = Requests::default();
        assert_eq!(requests.route("/api/webhook/sales"), RouteId(3));
        assert_eq!(requests.route("/api/webhook/batch"), RouteId(3));
        assert_eq!(requests.route("/api/webhook/sales/batch"), RouteId(4));
        assert_eq!(
            requests.route("/api/webhook/sales/k/ik_0123456789ab_secret"),
            RouteId(6)
        );
        assert_eq!(
            requests.route("/api/admin/connectors/c_1/logs"),
            RouteId(19)
        );
        assert_eq!(requests.route("/"), RouteId(34), "the web UI's page");
        for unknown in ["/nope", "/api/webhook/sales/extra/more", "/healthz/"] {
            assert_eq!(requests.route(unknown), RouteId(ROUTES.len()), "{unknown}");
        }
    }

    #[test]
    fn statuses_count_under_their_code_or_their_class() {
        let requests = Requests::default();
        let webhook = requests.route("/api/webhook/sales");
        requests.count(webhook, StatusCode::ACCEPTED);
        requests.count(webhook, StatusCode::ACCEPTED);
        requests.count(webhook, StatusCode::IM_A_TEAPOT);
        requests.count(webhook, StatusCode::MISDIRECTED_REQUEST);
        assert_eq!(requests.counted(webhook, StatusCode::ACCEPTED), 2);
        assert_eq!(requests.counted(webhook, StatusCode::IM_A_TEAPOT), 2, "4xx");
        assert_eq!(requests.counted(webhook, StatusCode::OK), 0);
        assert_eq!(status_slot(101), STATUSES.len());
        assert_eq!(status_slot(599), STATUSES.len() + 4);
        assert_eq!(status_slot(999), STATUSES.len() + 4, "out of range: 5xx");
    }
}
