//! docs/openapi.yaml against the server: real responses (successes and
//! errors from every route) must match the documented schemas, and the
//! request bodies the tests send must match the documented request schemas.
//! The checker covers the JSON-Schema subset the document uses: $ref,
//! allOf, oneOf, nullable, type, enum, required, properties, additionalProperties,
//! items, minimum.

mod common;

use common::{TestServer, request};
use serde_json::Value;
use vitrine_core::synthetic::{SyntheticSpec, embedding_model, neighbors_model};

fn doc() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.yaml");
    serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn resolve<'a>(doc: &'a Value, mut s: &'a Value) -> &'a Value {
    while let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let mut node = doc;
        for part in r.trim_start_matches("#/").split('/') {
            node = &node[part];
        }
        assert!(!node.is_null(), "dangling $ref {r}");
        s = node;
    }
    s
}

fn check(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let s = resolve(doc, schema);
    if v.is_null() && s.get("nullable").and_then(Value::as_bool) == Some(true) {
        return Ok(());
    }
    if let Some(all) = s.get("allOf").and_then(Value::as_array) {
        for sub in all {
            check(doc, sub, v, at)?;
        }
    }
    if let Some(one) = s.get("oneOf").and_then(Value::as_array) {
        let ok = one
            .iter()
            .filter(|sub| check(doc, sub, v, at).is_ok())
            .count();
        if ok != 1 {
            return Err(format!("{at}: matches {ok} of the oneOf alternatives: {v}"));
        }
    }
    if let Some(t) = s.get("type").and_then(Value::as_str) {
        let ok = match t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            other => return Err(format!("{at}: checker does not know type {other}")),
        };
        if !ok {
            return Err(format!("{at}: expected {t}, got {v}"));
        }
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        return Err(format!("{at}: {v} not in {e:?}"));
    }
    if let (Some(min), Some(x)) = (s.get("minimum").and_then(Value::as_f64), v.as_f64())
        && x < min
    {
        return Err(format!("{at}: {x} below minimum {min}"));
    }
    if let Some(obj) = v.as_object() {
        for r in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = r.as_str().unwrap();
            if !obj.contains_key(key) {
                return Err(format!("{at}: required key {key:?} missing in {v}"));
            }
        }
        let props = s.get("properties").and_then(Value::as_object);
        for (key, val) in obj {
            match props.and_then(|p| p.get(key)) {
                Some(ps) => check(doc, ps, val, &format!("{at}.{key}"))?,
                None => match s.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        // allOf members each list part of the keys; only a
                        // schema without allOf owns the whole object.
                        return Err(format!("{at}: undocumented key {key:?}"));
                    }
                    Some(extra @ Value::Object(_)) => {
                        check(doc, extra, val, &format!("{at}.{key}"))?
                    }
                    _ => {}
                },
            }
        }
    }
    if let (Some(items), Some(arr)) = (s.get("items"), v.as_array()) {
        for (i, x) in arr.iter().enumerate() {
            check(doc, items, x, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

fn operation<'a>(doc: &'a Value, path: &str, method: &str) -> &'a Value {
    let op = &doc["paths"][path][method];
    assert!(!op.is_null(), "{method} {path} is not documented");
    op
}

fn response_schema<'a>(doc: &'a Value, path: &str, method: &str, status: u16) -> &'a Value {
    let r = &operation(doc, path, method)["responses"][status.to_string()];
    assert!(
        !r.is_null(),
        "{method} {path} does not document status {status}"
    );
    let r = resolve(doc, r);
    let content = &r["content"]["application/json"]["schema"];
    assert!(
        !content.is_null(),
        "{method} {path} {status}: no JSON schema"
    );
    content
}

#[test]
fn real_responses_match_the_documented_schemas() {
    let doc = doc();
    let emb = embedding_model(&SyntheticSpec::demo());
    let nbr = neighbors_model(&SyntheticSpec::demo());
    let s = TestServer::start(&[("shop", &emb), ("nbr", &nbr)], |c| {
        c.admin_token = "t0k3n".into()
    });
    let cases: Vec<(&str, &str, String, &str)> = vec![
        (
            "post",
            "/v1/models/{model}/recommend",
            "/v1/models/shop/recommend".into(),
            r#"{"user": "user-1", "k": 3}"#,
        ),
        (
            "post",
            "/v1/models/{model}/recommend",
            "/v1/models/nbr/recommend".into(),
            r#"{"user": "user-1", "k": 3, "filter": {"category": "c1", "tags": ["sale"]}}"#,
        ),
        (
            "post",
            "/v1/models/{model}/recommend",
            "/v1/models/shop/recommend".into(),
            r#"{"user": "stranger"}"#,
        ),
        (
            "post",
            "/v1/models/{model}/recommend",
            "/v1/models/shop/recommend".into(),
            r#"{"history": ["SKU-00001-M"], "exclude_seen": false}"#,
        ),
        (
            "post",
            "/v1/models/{model}/recommend",
            "/v1/models/shop/recommend".into(),
            r#"{"user": "user-1", "k": 0}"#,
        ),
        (
            "post",
            "/v1/models/{model}/recommend",
            "/v1/models/none/recommend".into(),
            r#"{"user": "user-1"}"#,
        ),
        (
            "get",
            "/v1/models/{model}/recommend",
            "/v1/models/shop/recommend?user=user-1&k=2&category=c2".into(),
            "",
        ),
        (
            "post",
            "/v1/models/{model}/recommend:batch",
            "/v1/models/shop/recommend:batch".into(),
            r#"{"requests": [{"user": "user-1"}, {"user": "nobody", "k": 2}]}"#,
        ),
        (
            "post",
            "/v1/models/{model}/recommend:batch",
            "/v1/models/shop/recommend:batch".into(),
            r#"{"requests": [{"user": "user-2", "k": 0}]}"#,
        ),
        (
            "post",
            "/v1/models/{model}/similar",
            "/v1/models/shop/similar".into(),
            r#"{"item": "SKU-00002-L", "k": 4}"#,
        ),
        (
            "post",
            "/v1/models/{model}/similar",
            "/v1/models/nbr/similar".into(),
            r#"{"item": "SKU-NOPE"}"#,
        ),
        (
            "post",
            "/v1/models/{model}/score",
            "/v1/models/shop/score".into(),
            r#"{"user": "user-1", "items": ["SKU-00002-L"]}"#,
        ),
        (
            "post",
            "/v1/models/{model}/score",
            "/v1/models/shop/score".into(),
            r#"{"user": "stranger", "items": ["SKU-00002-L"]}"#,
        ),
        ("get", "/v1/models", "/v1/models".into(), ""),
        ("get", "/v1/models/{model}", "/v1/models/shop".into(), ""),
        ("get", "/v1/models/{model}", "/v1/models/nope".into(), ""),
        ("get", "/healthz", "/healthz".into(), ""),
        ("get", "/readyz", "/readyz".into(), ""),
    ];
    for (method, template, path, body) in &cases {
        let r = request(s.addr, &method.to_uppercase(), path, &[], body.as_bytes());
        // Requests the server answered in full must be documented as valid.
        if !body.is_empty() && r.status == 200 && !r.text().contains("\"error\"") {
            let req_schema = &operation(&doc, template, method)["requestBody"]["content"]["application/json"]
                ["schema"];
            let req: Value = serde_json::from_str(body).unwrap();
            check(&doc, req_schema, &req, "request")
                .unwrap_or_else(|e| panic!("{method} {path} request: {e}"));
        }
        let schema = response_schema(&doc, template, method, r.status);
        check(&doc, schema, &r.json(), "response")
            .unwrap_or_else(|e| panic!("{method} {path} → {}: {e}", r.status));
    }
    for (auth, status) in [("Bearer wrong", 401u16), ("Bearer t0k3n", 409)] {
        let r = request(
            s.addr,
            "POST",
            "/v1/models/shop/rollback",
            &[("Authorization", auth)],
            b"",
        );
        assert_eq!(r.status, status);
        check(
            &doc,
            response_schema(&doc, "/v1/models/{model}/rollback", "post", status),
            &r.json(),
            "response",
        )
        .unwrap();
    }
    let m = s.get("/metrics");
    assert_eq!(m.status, 200);
    assert!(m.header("content-type").unwrap().starts_with("text/plain"));
}

#[test]
fn the_checker_rejects_what_the_schema_forbids() {
    let doc = doc();
    let items = &doc["components"]["schemas"]["Items"];
    let good: Value =
        serde_json::json!({"model": "m", "version": 1, "items": [{"id": "a", "score": 1.5}]});
    assert!(check(&doc, items, &good, "x").is_ok());
    for bad in [
        serde_json::json!({"model": "m", "version": 1}),
        serde_json::json!({"model": "m", "version": "1", "items": []}),
        serde_json::json!({"model": "m", "version": 1, "items": [{"id": 3, "score": 1.0}]}),
        serde_json::json!({"model": "m", "version": 1, "items": [], "extra": true}),
        serde_json::json!({"model": "m", "version": 1, "items": [], "fallback": "random"}),
    ] {
        assert!(check(&doc, items, &bad, "x").is_err(), "{bad} accepted");
    }
}
