//! A sync app that also exports `packed`, with the wrong type: its
//! `handle` takes only the route. The host must refuse it at load, naming
//! the export, rather than load it and fail every instance it starts.

wit_bindgen::generate!({ path: "wit", world: "wrong-packed" });

use cello::component::types::{AppPolicy, Route, RoutePolicy};

struct App;

impl Guest for App {
    fn describe() -> Manifest {
        let policy = RoutePolicy {
            cache: None,
            roles: Vec::new(),
            scopes: Vec::new(),
            rate_limit: None,
        };
        Manifest {
            name: "wrong-packed".into(),
            routes: vec![Route {
                methods: vec!["GET".into()],
                path: "/".into(),
                is_async: false,
                policy,
            }],
            policy: AppPolicy {
                cors: None,
                access_log: false,
            },
        }
    }

    fn handle(_: Request) -> Response {
        answer()
    }

    fn on_start() -> Result<(), String> {
        Ok(())
    }

    fn on_stop() {}

    fn run_background(_: String) {}
}

impl exports::cello::component::packed::Guest for App {
    fn handle(_: u32) -> Response {
        answer()
    }
}

fn answer() -> Response {
    Response {
        status: 200,
        headers: Vec::new(),
        body: b"served".to_vec(),
        background: false,
    }
}

export!(App);
