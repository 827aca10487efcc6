//! A plain `wasi:http/proxy` component that reads `wasi:config/store`, as
//! a component written for `wasmtime serve -S config` or Spin would:
//! `/NAME` answers the value of NAME, `/` every name it sees.

use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wit_bindgen::generate!({ path: "wit", world: "guest", generate_all });

use wasi::config::store;

wasip2::http::proxy::export!(Proxy);

struct Proxy;

impl wasip2::exports::http::incoming_handler::Guest for Proxy {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let (status, body) = match path.trim_start_matches('/') {
            "" => match store::get_all() {
                Ok(mut all) => {
                    all.sort();
                    let names: Vec<String> =
                        all.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
                    (200, names.join(";"))
                }
                Err(error) => (500, format!("{error:?}")),
            },
            name => match store::get(name) {
                Ok(Some(value)) => (200, value),
                Ok(None) => (404, format!("{name} is not set")),
                Err(error) => (500, format!("{error:?}")),
            },
        };
        let response = OutgoingResponse::new(Fields::new());
        response.set_status_code(status).unwrap();
        let outgoing = response.body().unwrap();
        ResponseOutparam::set(response_out, Ok(response));
        let stream = outgoing.write().unwrap();
        stream.blocking_write_and_flush(body.as_bytes()).unwrap();
        drop(stream);
        OutgoingBody::finish(outgoing, None).unwrap();
    }
}
