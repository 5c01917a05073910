//! The OpenADR 3.1.0 VTN of a real dev node: a client registered by the DSO through the CLI,
//! the token flow both ways and its refusals, programs and events equal to the chain's cleared
//! prices, modes and limit changes, paging, targets, problem bodies, and revocation.

use serde_json::{Value, json};
use std::time::Duration;

mod common;

use common::{Dev, assert_ok};

impl Dev {
    fn vtn(&self, path: &str) -> String {
        format!("{}/openadr3/3.1.0{path}", self.url)
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// `(status, JSON body, headers)` of a response.
fn answer(
    r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> (u16, Value, ureq::http::HeaderMap) {
    let mut r = r.expect("the node answers");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.body_mut().read_to_string().unwrap();
    let body =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {text}"));
    (status, body, headers)
}

fn get(url: &str, token: Option<&str>) -> (u16, Value, ureq::http::HeaderMap) {
    let mut r = agent().get(url);
    if let Some(t) = token {
        r = r.header("authorization", &format!("Bearer {t}"));
    }
    answer(r.call())
}

fn token_request(
    url: &str,
    basic: Option<(&str, &str)>,
    form: &str,
) -> (u16, Value, ureq::http::HeaderMap) {
    use base64::Engine as _;
    let mut r = agent()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some((id, secret)) = basic {
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        r = r.header("authorization", &format!("Basic {b}"));
    }
    answer(r.send(form.as_bytes()))
}

/// Asserts an OpenADR problem body of `status`.
fn problem(got: &(u16, Value, ureq::http::HeaderMap), status: u16) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["status"], status, "a problem body: {}", got.1);
    assert!(got.1["detail"].is_string(), "{}", got.1);
}

#[test]
fn a_ven_reads_the_chains_prices_and_grid_events_through_the_openadr_vtn() {
    let dev = Dev::start();
    dev.register_demo_feeder();
    // A limit change and an alert ahead, so that every kind of event is served.
    let next = dev.ok(&["market", "status"])["next_interval"]
        .as_u64()
        .unwrap();
    let later = (next + 50).to_string();
    let v = dev.ok(&[
        "tx",
        "feeder",
        "limit",
        "--key",
        dev.dso(),
        "--node",
        "t1",
        "--import-kw",
        "300",
        "--export-kw",
        "200.5",
        "--from-interval",
        &later,
    ]);
    assert_eq!(v["status"], "accepted", "{v}");
    let v = dev.ok(&[
        "tx",
        "grid-mode",
        "alert",
        "--key",
        dev.dso(),
        "--from-interval",
        &later,
    ]);
    assert_eq!(v["status"], "accepted", "{v}");
    // Two cleared intervals at least.
    let k = next + 1;
    dev.ok(&["market", "result", &k.to_string(), "--wait", "60"]);

    // The DSO registers a VEN client; the secret is shown once, the list never shows it.
    let c = dev.ok(&[
        "openadr",
        "client",
        "add",
        "--name",
        "thermostat",
        "--key",
        dev.dso(),
    ]);
    let id = c["client"]["client_id"].as_str().unwrap().to_owned();
    let secret = c["client_secret"].as_str().unwrap().to_owned();
    assert!(
        id.bytes()
            .chain(secret.bytes())
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    let list = dev.ok(&["openadr", "client", "list", "--key", dev.dso()]);
    assert_eq!(list[0]["client_id"], id.as_str());
    assert!(!list.to_string().contains(&secret));

    // Discovery needs no token and names an absolute token URL of this host.
    let spec = Spec::load();
    let (status, server, _) = get(&dev.vtn("/auth/server"), None);
    assert_eq!(status, 200);
    spec.check("/auth/server", "get", 200, &server);
    let token_url = server["tokenURL"].as_str().unwrap().to_owned();
    assert_eq!(token_url, dev.vtn("/auth/token"));

    // The token both ways; refusals with RFC 6749 bodies.
    let grant = "grant_type=client_credentials";
    let (status, basic, headers) = token_request(&token_url, Some((&id, &secret)), grant);
    assert_eq!(status, 200, "{basic}");
    spec.check("/auth/token", "post", 200, &basic);
    assert_eq!(basic["token_type"], "Bearer");
    assert!(basic["expires_in"].as_u64().unwrap() >= 60);
    assert_eq!(headers.get("cache-control").unwrap(), "no-store");
    let form = format!("{grant}&client_id={id}&client_secret={secret}&scope=read_targets");
    let (status, by_form, _) = token_request(&token_url, None, &form);
    assert_eq!(
        (status, by_form["scope"].as_str()),
        (200, Some("read_targets")),
        "{by_form}"
    );
    let both = token_request(&token_url, Some((&id, &secret)), &form);
    assert_eq!(
        (both.0, both.1["error"].as_str()),
        (400, Some("invalid_request")),
        "{}",
        both.1
    );
    let wrong = token_request(&token_url, Some((&id, "not-the-secret")), grant);
    assert_eq!(
        (wrong.0, wrong.1["error"].as_str()),
        (401, Some("invalid_client"))
    );
    assert!(wrong.2.get("www-authenticate").is_some());
    let none = token_request(&token_url, None, grant);
    assert_eq!(
        (none.0, none.1["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let scope = token_request(
        &token_url,
        Some((&id, &secret)),
        &format!("{grant}&scope=write_programs"),
    );
    assert_eq!(
        (scope.0, scope.1["error"].as_str()),
        (400, Some("invalid_scope"))
    );
    let other = token_request(&token_url, Some((&id, &secret)), "grant_type=password");
    assert_eq!(
        (other.0, other.1["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );

    // Without a token, or with a bogus one: 401 problems; the valid one reads.
    let missing = get(&dev.vtn("/programs"), None);
    problem(&missing, 401);
    spec.check("/programs", "get", 401, &missing.1);
    assert!(missing.2.get("www-authenticate").is_some());
    problem(&get(&dev.vtn("/programs"), Some("not.a.token")), 401);
    let token = basic["access_token"].as_str().unwrap().to_owned();
    let (status, programs, _) = get(&dev.vtn("/programs"), Some(&token));
    assert_eq!(status, 200, "{programs}");
    spec.check("/programs", "get", 200, &programs);
    let programs = programs.as_array().unwrap().clone();
    assert_eq!(programs.len(), 1);
    let p = &programs[0];
    assert_eq!(
        (
            p["id"].as_str(),
            p["programName"].as_str(),
            p["objectType"].as_str()
        ),
        (Some("demo"), Some("demo"), Some("PROGRAM"))
    );
    assert_eq!(p["intervalPeriod"]["duration"], "PT10S");
    let price = p["payloadDescriptors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["payloadType"] == "PRICE")
        .unwrap();
    assert_eq!(
        price,
        &json!({"objectType": "EVENT_PAYLOAD_DESCRIPTOR", "payloadType": "PRICE", "units": "KWH", "currency": "EUR"})
    );
    let (status, one, _) = get(&dev.vtn("/programs/demo"), Some(&token));
    assert_eq!((status, &one), (200, p));
    spec.check("/programs/{programID}", "get", 200, &one);
    let absent = get(&dev.vtn("/programs/nope"), Some(&token));
    problem(&absent, 404);
    spec.check("/programs/{programID}", "get", 404, &absent.1);

    // Events: a price event per node whose values are the chain's cleared prices, exactly.
    let (status, events, _) = get(&dev.vtn("/events?programID=demo"), Some(&token));
    assert_eq!(status, 200, "{events}");
    spec.check("/events", "get", 200, &events);
    let events = events.as_array().unwrap().clone();
    let ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let limit_id = format!("demo-limit-1-{later}");
    assert_eq!(
        ids,
        vec![
            "demo-alert",
            limit_id.as_str(),
            "demo-price-0",
            "demo-price-1"
        ]
    );
    for e in &events {
        assert_eq!(e["objectType"], "EVENT");
        assert_eq!(e["programID"], "demo");
        assert!(e["createdDateTime"].as_str().unwrap().ends_with('Z'));
        assert!(e.get("duration").is_none(), "never event.duration");
    }
    let t1 = &events[3];
    assert_eq!(t1["targets"], json!(["node-1", "t1"]));
    let intervals = t1["intervals"].as_array().unwrap();
    assert!(intervals.len() >= 2, "{t1}");
    for i in intervals {
        let k = i["id"].as_u64().unwrap();
        assert_eq!(i["intervalPeriod"]["duration"], "PT10S");
        let r = dev.ok(&["market", "result", &k.to_string()]);
        assert_eq!(
            i["intervalPeriod"]["start"],
            rfc3339(r["start_ms"].as_u64().unwrap())
        );
        // The chain's price in currency/MWh, per kWh.
        let per_kwh = r["prices"]["t1"].as_f64().unwrap() / 1_000.0;
        for kind in ["PRICE", "EXPORT_PRICE"] {
            let payload = i["payloads"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["type"] == kind)
                .unwrap();
            assert_eq!(
                payload["values"][0].as_f64(),
                Some(per_kwh),
                "{kind} of interval {k}"
            );
        }
    }
    // The limit change and the alert.
    let limit = &events[1];
    assert_eq!(limit["targets"], json!(["node-1", "t1"]));
    let payloads = &limit["intervals"][0]["payloads"];
    assert_eq!(
        payloads,
        &json!([{"type": "IMPORT_CAPACITY_LIMIT", "values": [300]}, {"type": "EXPORT_CAPACITY_LIMIT", "values": [200.5]}])
    );
    let alert = &events[0];
    assert_eq!(
        alert["intervals"][0]["payloads"][0],
        json!({"type": "ALERT_GRID_EMERGENCY", "values": ["ALERT"]})
    );
    assert_eq!(
        alert["intervals"][0]["id"].as_u64().unwrap().to_string(),
        later
    );
    // One event by id; an unknown one is 404.
    let (status, by_id, _) = get(&dev.vtn("/events/demo-price-1"), Some(&token));
    assert_eq!(status, 200);
    spec.check("/events/{eventID}", "get", 200, &by_id);
    // The check can fail: an event without its program, or with a text interval id, does not
    // pass.
    let mut bad = by_id.clone();
    bad.as_object_mut().unwrap().remove("programID");
    assert!(
        !spec
            .errors("/events/{eventID}", "get", 200, &bad)
            .is_empty()
    );
    let mut bad = by_id.clone();
    bad["intervals"][0]["id"] = json!("one");
    assert!(
        !spec
            .errors("/events/{eventID}", "get", 200, &bad)
            .is_empty()
    );
    assert_eq!(by_id["id"], "demo-price-1");
    problem(&get(&dev.vtn("/events/demo-price-9"), Some(&token)), 404);

    // Paging: pages of one, in a stable order, only the last short, their union the list.
    let mut paged = Vec::new();
    for skip in 0.. {
        let (status, page, _) = get(
            &dev.vtn(&format!("/events?programID=demo&skip={skip}&limit=1")),
            Some(&token),
        );
        assert_eq!(status, 200);
        let page = page.as_array().unwrap().clone();
        if page.is_empty() {
            break;
        }
        paged.extend(page.into_iter().map(|e| e["id"].clone()));
    }
    assert_eq!(paged.len(), 4, "four pages");
    assert_eq!(paged, ids.iter().map(|i| json!(i)).collect::<Vec<_>>());
    let too_many = get(&dev.vtn("/events?limit=51"), Some(&token));
    problem(&too_many, 400);
    spec.check("/events", "get", 400, &too_many.1);
    problem(&get(&dev.vtn("/events?skip=-1"), Some(&token)), 400);
    problem(&get(&dev.vtn("/events?programID=a%20b"), Some(&token)), 400);
    // Targets narrow: every given one must match.
    let (_, t, _) = get(&dev.vtn("/events?targets=node-1"), Some(&token));
    let t: Vec<&str> = t
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(t, vec![limit_id.as_str(), "demo-price-1"]);
    let (_, t, _) = get(
        &dev.vtn("/events?targets=node-1&targets=node-0"),
        Some(&token),
    );
    assert_eq!(t, json!([]));
    // Unknown endpoints and methods are problems too.
    problem(&get(&dev.vtn("/nowhere"), Some(&token)), 404);
    let (status, body, _) = answer(
        agent()
            .delete(&dev.vtn("/events/demo-price-1"))
            .header("authorization", &format!("Bearer {token}"))
            .call(),
    );
    assert_eq!((status, body["status"].as_u64()), (405, Some(405)));

    // An independent VEN client library (openleadr-client, OpenADR 3.1) reads the same
    // program and events with the token URL the VTN names, and finds the chain's prices.
    let base: url::Url = format!("{}/", dev.vtn("")).parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use openleadr_client::{Client, ClientCredentials, Filter, VirtualEndNode};
        let ven = Client::<VirtualEndNode>::with_details(
            base,
            token_url.parse().unwrap(),
            reqwest::Client::new(),
            Some(ClientCredentials::new(id.clone(), secret.clone())),
        );
        let programs = ven.get_program_list(Filter::none()).await.expect("programs");
        assert_eq!(programs.len(), 1);
        assert_eq!(programs[0].content().program_name, "demo");
        let events = ven
            .get_event_list(Some(programs[0].id()), Filter::none())
            .await
            .expect("events");
        let got: Vec<String> = events.iter().map(|e| e.id().to_string()).collect();
        assert_eq!(got, ids);
        let t1 = events.iter().find(|e| e.id().as_str() == "demo-price-1").unwrap();
        let served = t1.content().intervals.as_ref().unwrap();
        assert_eq!(served.len(), intervals.len());
        for (i, ours) in served.iter().zip(intervals) {
            assert_eq!(i64::from(i.id), ours["id"].as_i64().unwrap());
            let price = i
                .payloads
                .iter()
                .find(|p| p.value_type == openleadr_wire::event::EventType::Price)
                .unwrap();
            let expected = ours["payloads"][0]["values"][0].as_f64().unwrap();
            assert!(
                matches!(price.values[..], [openleadr_wire::values_map::Value::Number(x)] if x == expected),
                "{:?} vs {expected}",
                price.values
            );
        }
        let near = ven
            .get_event_list(Some(programs[0].id()), Filter::By(&["node-1"]))
            .await
            .expect("targeted events");
        assert_eq!(near.len(), 2);
    });

    // Revoked, its token stops working; rotated, the old secret does.
    let rotated = dev.ok(&["openadr", "client", "rotate", &id, "--key", dev.dso()]);
    let new_secret = rotated["client_secret"].as_str().unwrap();
    assert_ne!(new_secret, secret);
    assert_eq!(
        token_request(&token_url, Some((&id, &secret)), grant).0,
        401
    );
    assert_eq!(
        token_request(&token_url, Some((&id, new_secret)), grant).0,
        200
    );
    dev.ok(&["openadr", "client", "revoke", &id, "--key", dev.dso()]);
    problem(&get(&dev.vtn("/programs"), Some(&token)), 401);
    // Only a DSO manages clients.
    let out = dev.run(&["openadr", "client", "list"]);
    assert_ok(&out);
    let _ = dev.dir.path();
}

/// The vendored OpenADR 3.1.0 description, for validating the VTN's answers against it.
/// A webhook receiver on loopback: every request's (request line, headers, body), in order.
fn webhook() -> (String, std::sync::mpsc::Receiver<(String, String, Value)>) {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/cb", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap_or_default();
            let mut headers = String::new();
            let mut length = 0;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                headers.push_str(&h);
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap_or_default();
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if tx.send((line.trim().to_owned(), headers, body)).is_err() {
                return;
            }
        }
    });
    (url, rx)
}

fn send_json(
    method: &str,
    url: &str,
    token: &str,
    body: &Value,
) -> (u16, Value, ureq::http::HeaderMap) {
    let r = ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .unwrap();
    answer(agent().run(r))
}

#[test]
fn a_subscriptions_webhook_is_told_of_each_new_clearing_and_only_its_owner_sees_it() {
    let dev = Dev::start_with(&["--openadr-loopback-webhooks"]);
    dev.register_demo_feeder();
    let token_of = |name: &str, scope: Option<&str>| {
        let c = dev.ok(&[
            "openadr",
            "client",
            "add",
            "--name",
            name,
            "--key",
            dev.dso(),
        ]);
        let id = c["client"]["client_id"].as_str().unwrap().to_owned();
        let secret = c["client_secret"].as_str().unwrap().to_owned();
        let form = match scope {
            Some(s) => format!("grant_type=client_credentials&scope={s}"),
            None => "grant_type=client_credentials".to_owned(),
        };
        let t = token_request(&dev.vtn("/auth/token"), Some((&id, &secret)), &form);
        assert_eq!(t.0, 200, "{}", t.1);
        t.1["access_token"].as_str().unwrap().to_owned()
    };
    let ven = token_of("ven", None);
    let other = token_of("other", None);
    let reader = token_of("reader", Some("read_all"));
    let spec = Spec::load();
    let (callback, received) = webhook();
    let request = json!({
        "clientName": "ven-1",
        "objectOperations": [{
            "objects": ["EVENT"],
            "operations": ["CREATE", "UPDATE"],
            "callbackUrl": callback,
            "bearerToken": "cb-secret",
        }],
    });
    // Scopes, webhooks that are not https, and what this VTN notifies are checked.
    problem(
        &send_json("POST", &dev.vtn("/subscriptions"), &reader, &request),
        403,
    );
    let mut plain = request.clone();
    plain["objectOperations"][0]["callbackUrl"] = json!("http://192.0.2.1/cb");
    problem(
        &send_json("POST", &dev.vtn("/subscriptions"), &ven, &plain),
        400,
    );
    let mut reports = request.clone();
    reports["objectOperations"][0]["objects"] = json!(["REPORT"]);
    problem(
        &send_json("POST", &dev.vtn("/subscriptions"), &ven, &reports),
        400,
    );
    problem(
        &send_json(
            "POST",
            &dev.vtn("/subscriptions"),
            &ven,
            &json!({"clientName": "x"}),
        ),
        400,
    );

    let created = send_json("POST", &dev.vtn("/subscriptions"), &ven, &request);
    assert_eq!(created.0, 201, "{}", created.1);
    spec.check("/subscriptions", "post", 201, &created.1);
    let id = created.1["id"].as_str().unwrap().to_owned();
    assert_eq!(created.1["objectType"], "SUBSCRIPTION");
    assert_eq!(
        created.1["objectOperations"][0]["callbackUrl"],
        callback.as_str()
    );
    let (status, list, _) = get(&dev.vtn("/subscriptions"), Some(&ven));
    assert_eq!(status, 200);
    spec.check("/subscriptions", "get", 200, &list);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let one = get(&dev.vtn(&format!("/subscriptions/{id}")), Some(&ven));
    assert_eq!(one.0, 200);
    spec.check("/subscriptions/{subscriptionID}", "get", 200, &one.1);
    // Another client sees none of it.
    let (status, list, _) = get(&dev.vtn("/subscriptions"), Some(&other));
    assert_eq!((status, list), (200, json!([])));
    problem(
        &get(&dev.vtn(&format!("/subscriptions/{id}")), Some(&other)),
        404,
    );
    problem(
        &send_json(
            "DELETE",
            &dev.vtn(&format!("/subscriptions/{id}")),
            &other,
            &json!({}),
        ),
        404,
    );

    // The next clearing reaches the webhook: the price event, with the chain's price.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (line, headers, note) = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let got = received
            .recv_timeout(left)
            .expect("a notification within a minute");
        if got.2["object"]["id"]
            .as_str()
            .is_some_and(|i| i.contains("-price-"))
        {
            break got;
        }
    };
    assert_eq!(line, "POST /cb HTTP/1.1");
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("authorization: bearer cb-secret"),
        "{headers}"
    );
    let errors = spec.component_errors("notification", &note);
    assert!(
        errors.is_empty(),
        "not an OpenADR notification: {errors:#?}
{note}"
    );
    assert_eq!(note["objectType"], "EVENT");
    assert!(
        matches!(note["operation"].as_str(), Some("CREATE" | "UPDATE")),
        "{note}"
    );
    let event = &note["object"];
    let last = event["intervals"].as_array().unwrap().last().unwrap();
    let k = last["id"].as_u64().unwrap();
    let node = event["id"]
        .as_str()
        .unwrap()
        .rsplit('-')
        .next()
        .unwrap()
        .parse::<usize>()
        .unwrap();
    let r = dev.ok(&["market", "result", &k.to_string()]);
    let node_id = ["substation", "t1"][node];
    let per_mwh = r["prices"][node_id].as_f64().unwrap();
    assert_eq!(last["payloads"][0]["type"], "PRICE");
    assert_eq!(
        last["payloads"][0]["values"][0].as_f64().unwrap() * 1000.0,
        per_mwh
    );

    // Replaced, then deleted: the answer is the subscription as it was.
    let mut renamed = request.clone();
    renamed["clientName"] = json!("ven-1b");
    let put = send_json(
        "PUT",
        &dev.vtn(&format!("/subscriptions/{id}")),
        &ven,
        &renamed,
    );
    assert_eq!(put.0, 200, "{}", put.1);
    spec.check("/subscriptions/{subscriptionID}", "put", 200, &put.1);
    assert_eq!(put.1["clientName"], "ven-1b");
    let deleted = send_json(
        "DELETE",
        &dev.vtn(&format!("/subscriptions/{id}")),
        &ven,
        &json!({}),
    );
    assert_eq!(deleted.0, 200, "{}", deleted.1);
    spec.check("/subscriptions/{subscriptionID}", "delete", 200, &deleted.1);
    problem(
        &get(&dev.vtn(&format!("/subscriptions/{id}")), Some(&ven)),
        404,
    );
}

struct Spec {
    doc: Value,
}

impl Spec {
    fn load() -> Self {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../node/openadr/openadr3-3.1.0.yaml"
        );
        let bytes = std::fs::read(path).unwrap();
        use sha2::Digest as _;
        assert_eq!(
            hex::encode(sha2::Sha256::digest(&bytes)),
            "0a85f28a91565b3e2c7488d2a7a7a9afb11ce3ef6b35afddb328484720077006",
            "the vendored description is the published one"
        );
        let mut doc: Value = serde_yaml_ng::from_slice(&bytes).unwrap();
        nullable(&mut doc);
        Self { doc }
    }

    /// The schema of `method path`'s answer with `status` (`path` as the description writes
    /// it, `{programID}` and all).
    fn schema(&self, path: &str, method: &str, status: u16) -> Value {
        let mut r = self.doc["paths"][path][method]["responses"][status.to_string()].clone();
        if let Some(reference) = r["$ref"].as_str() {
            let name = reference.trim_start_matches("#/components/responses/");
            r = self.doc["components"]["responses"][name].clone();
        }
        let schema = r["content"]["application/json"]["schema"].clone();
        assert!(
            schema.is_object(),
            "the description has no schema for {method} {path} {status}"
        );
        schema
    }

    /// Asserts that `body`, the answer to `method path` with `status`, is what the description
    /// says.
    fn check(&self, path: &str, method: &str, status: u16, body: &Value) {
        let errors = self.errors(path, method, status, body);
        assert!(
            errors.is_empty(),
            "{method} {path} {status} does not match the OpenADR 3.1.0 description: {errors:#?}\n{body}"
        );
    }
}

impl Spec {
    /// What in `body` the description's component schema `name` refuses.
    fn component_errors(&self, name: &str, body: &Value) -> Vec<String> {
        let root = json!({
            "$ref": format!("#/components/schemas/{name}"),
            "components": self.doc["components"].clone(),
        });
        let validator = jsonschema::draft4::new(&root).unwrap();
        validator
            .iter_errors(body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect()
    }

    /// What in `body` the description refuses.
    fn errors(&self, path: &str, method: &str, status: u16, body: &Value) -> Vec<String> {
        let mut root = self.schema(path, method, status);
        root["components"] = self.doc["components"].clone();
        let validator = jsonschema::draft4::new(&root).unwrap_or_else(|e| {
            panic!("{method} {path} {status}: the schema does not compile: {e}")
        });
        validator
            .iter_errors(body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect()
    }
}

/// OpenAPI 3.0's `nullable: true` as JSON Schema: `null` is one more type.
fn nullable(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if map.remove("nullable") == Some(Value::Bool(true)) {
                match map.get("type").cloned() {
                    Some(Value::String(t)) => {
                        map.insert("type".into(), json!([t, "null"]));
                    }
                    _ => {
                        let inner = Value::Object(std::mem::take(map));
                        map.insert("anyOf".into(), json!([inner, {"type": "null"}]));
                    }
                }
            }
            for (_, child) in map.iter_mut() {
                nullable(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(nullable),
        _ => {}
    }
}

fn rfc3339(ms: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap();
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}
