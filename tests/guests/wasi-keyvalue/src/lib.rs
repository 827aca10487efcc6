//! A plain `wasi:http/proxy` component that keeps values through
//! `wasi:keyvalue`, as a component written for `wasmtime serve -S
//! keyvalue` or Spin would. The query names the call, so the path (and a
//! prefix the host may or may not strip) does not matter:
//! `?op=set&key=K&value=V&bucket=B`, `op` one of `get`, `set`, `delete`,
//! `exists`, `keys`, `increment` (`by`), `get-many` (`keys=a,b`),
//! `set-many` (`pairs=a:1,b:2`), `delete-many` (`keys=a,b`), `fill`
//! (`size=N`: a value of N bytes). A failed call
//! answers 500 with its error.

use std::collections::HashMap;

use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wit_bindgen::generate!({
    path: "../../../host/wit/wasi-keyvalue",
    world: "wasi:keyvalue/imports",
    generate_all,
});

use wasi::keyvalue::{atomics, batch, store};

wasip2::http::proxy::export!(Proxy);

struct Proxy;

impl wasip2::exports::http::incoming_handler::Guest for Proxy {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let query: HashMap<&str, &str> = path
            .split_once('?')
            .map(|(_, query)| query)
            .unwrap_or_default()
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .collect();
        let (status, body) = match call(&query) {
            Ok(Some(body)) => (200, body),
            Ok(None) => (404, "absent".to_string()),
            Err(error) => (500, describe(error)),
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

/// Makes the call the query names; `None` for a value that is absent.
fn call(query: &HashMap<&str, &str>) -> Result<Option<String>, store::Error> {
    let arg = |name: &str| query.get(name).copied().unwrap_or_default();
    let list = |name: &str| -> Vec<String> {
        arg(name)
            .split(',')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    };
    let bucket = store::open(arg("bucket"))?;
    let key = arg("key");
    let done = Ok(Some("ok".to_string()));
    match arg("op") {
        "get" => Ok(bucket.get(key)?.map(text)),
        "set" => bucket.set(key, arg("value").as_bytes()).and(done),
        "delete" => bucket.delete(key).and(done),
        "exists" => Ok(Some(bucket.exists(key)?.to_string())),
        "keys" => {
            let mut keys = bucket.list_keys(None)?.keys;
            keys.sort();
            Ok(Some(keys.join(",")))
        }
        "increment" => {
            let by = arg("by").parse().unwrap_or(1);
            Ok(Some(atomics::increment(&bucket, key, by)?.to_string()))
        }
        "fill" => {
            let size = arg("size").parse().unwrap_or(0);
            bucket.set(key, &vec![b'x'; size]).and(done)
        }
        "get-many" => {
            // `times=N` names the keys N times over.
            let times = arg("times").parse().unwrap_or(1);
            let named = list("keys");
            let keys: Vec<String> = named
                .iter()
                .cycle()
                .take(named.len() * times)
                .cloned()
                .collect();
            let found = batch::get_many(&bucket, &keys)?;
            let shown: Vec<String> = found
                .into_iter()
                .map(|pair| match pair {
                    Some((key, value)) => format!("{key}={}", text(value)),
                    None => "-".to_string(),
                })
                .collect();
            Ok(Some(shown.join(",")))
        }
        "set-many" => {
            let pairs: Vec<(String, Vec<u8>)> = list("pairs")
                .iter()
                .filter_map(|pair| pair.split_once(':'))
                .map(|(key, value)| (key.to_string(), value.as_bytes().to_vec()))
                .collect();
            batch::set_many(&bucket, &pairs).and(done)
        }
        "delete-many" => batch::delete_many(&bucket, &list("keys")).and(done),
        op => Ok(Some(format!("unknown op {op:?}"))),
    }
}

fn text(value: Vec<u8>) -> String {
    String::from_utf8_lossy(&value).into_owned()
}

fn describe(error: store::Error) -> String {
    match error {
        store::Error::NoSuchStore => "no-such-store".into(),
        store::Error::AccessDenied => "access-denied".into(),
        store::Error::Other(sentence) => format!("other: {sentence}"),
    }
}
