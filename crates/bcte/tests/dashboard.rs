//! The dashboard in a real browser: headless Chromium driven through WebDriver (ChromeDriver)
//! against a dev node. The page loads with no console error, shows the feeder and its prices,
//! and shows the new price of a newly cleared interval without reloading; signed in, it shows
//! the participant's own site. A screenshot is written to `$CARGO_TARGET_TMPDIR/dashboard.png`
//! (docs/img/dashboard.png is one).
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them; `BCTE_CHROMIUM` and
//! `BCTE_CHROMEDRIVER` name other binaries). Without them the test is skipped, except under
//! `CI=true`, where it fails.

mod common;

use common::{Dev, assert_ok};
use fantoccini::{Client, ClientBuilder, wd::WebDriverCompatibleCommand};
use serde_json::{Value, json};
use std::{
    os::unix::process::CommandExt as _,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The browser and its driver, if installed.
fn chromium() -> Option<(PathBuf, PathBuf)> {
    let pick = |var: &str, default: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(default))
    };
    let browser = pick("BCTE_CHROMIUM", "/usr/bin/chromium");
    let driver = pick("BCTE_CHROMEDRIVER", "/usr/bin/chromedriver");
    (browser.exists() && driver.exists()).then_some((browser, driver))
}

/// ChromeDriver in a process group of its own, with the browsers it starts: dropping it kills
/// the whole group, whatever the test did.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start(driver: &PathBuf, log: PathBuf) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .env("TZ", "UTC")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        loop {
            let ready = ureq::get(&format!("{url}/status"))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_json::<Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "chromedriver did not get ready in 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { child, url }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// ChromeDriver's browser log (`goog:loggingPrefs`): the console's messages and the page's
/// errors since the last read.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

/// Evaluates `script` (a function body) until it returns something other than null or false,
/// for `secs` at most, and returns that.
async fn until(c: &Client, what: &str, script: &str, secs: u64) -> Value {
    let started = Instant::now();
    loop {
        let v = c.execute(script, vec![]).await.expect("run a script");
        if !(v.is_null() || v == json!(false)) {
            return v;
        }
        if started.elapsed() > Duration::from_secs(secs) {
            let shown = c
                .execute("return document.body.innerText", vec![])
                .await
                .unwrap_or_default();
            panic!("the page did not show {what} within {secs} s; it shows:\n{shown}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const T1_PRICE: &str = "const e = document.querySelector('#feeder-tree g[data-node=\"t1\"] text.price'); \
     const k = document.getElementById('last-cleared').dataset.interval; \
     return e && e.dataset.price && k ? [Number(k), Number(e.dataset.price)] : null;";

#[test]
fn the_dashboard_shows_the_feeder_its_prices_and_a_new_clearing_live_in_a_real_browser() {
    let Some((browser, driver)) = chromium() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true, but Chromium or ChromeDriver is missing: install Debian's chromium and \
             chromium-driver (.ci/run does)"
        );
        eprintln!("skipped: no /usr/bin/chromium and /usr/bin/chromedriver");
        return;
    };
    let dev = Dev::start();
    dev.register_demo_feeder();
    let (house_key, house) = dev.key("house");
    let house_key = house_key.as_str();
    dev.register_site("house-7", &house);
    let first = dev.ok(&["market", "status"])["next_interval"]
        .as_u64()
        .unwrap();
    dev.ok(&["market", "result", &first.to_string(), "--wait", "60"]);

    // The page answers with its policy.
    let page = ureq::get(&dev.url).call().unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("default-src 'none'"),
        "{csp}"
    );

    let d = Driver::start(&driver, dev.path("chromedriver.log"));
    let profile = dev.path("chromium-profile");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": browser,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-quic", "--no-first-run", "--lang=en-US",
                "--window-size=1400,1500", format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // ChromeDriver speaks plain HTTP on loopback: no TLS.
        let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&d.url)
            .await
            .expect("a WebDriver session");
        c.goto(&dev.url).await.unwrap();

        // The feeder and its prices, as the chain has them.
        let shown = until(&c, "the price at t1", T1_PRICE, 30).await;
        let (k0, p0) = (shown[0].as_u64().unwrap(), shown[1].as_f64().unwrap());
        let api = dev.public(&["market", "result", &k0.to_string()]);
        assert_eq!(p0, api["prices"]["t1"].as_f64().unwrap());
        let nodes = c
            .execute(
                "return [...document.querySelectorAll('#feeder-tree g.node')].map(g => g.dataset.node)",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(nodes, json!(["substation", "t1"]));
        until(&c, "the price chart", "return !!document.querySelector('#chart .u-over')", 10).await;

        // A sentinel that a reload would lose, then a clearing that congests t1's edge.
        c.execute("window.__sentinel = 'kept'; return null", vec![])
            .await
            .unwrap();
        let next = dev.ok(&["market", "status"])["next_interval"]
            .as_u64()
            .unwrap();
        let ks: Vec<u64> = (next + 1..next + 10).collect();
        for k in &ks {
            let v = dev.ok(&[
                "tx", "bid", "--key", house_key, "--site", "house-7", "--interval",
                &k.to_string(), "--curve", "[[0, 600], [200, 300]]",
            ]);
            assert_eq!(v["status"], "accepted", "{v}");
        }
        let r = dev.public(&["market", "result", &ks[0].to_string(), "--wait", "90"]);
        let p1 = r["prices"]["t1"].as_f64().unwrap();
        assert_ne!(p1, p0, "the bid should move t1's price");
        assert_eq!(r["congested_edges"]["t1"], "import");
        let script = format!(
            "const s = (() => {{ {T1_PRICE} }})(); \
             return s && s[0] >= {} && s[0] <= {} && s[1] === {p1} ? s : null;",
            ks[0],
            ks[ks.len() - 1]
        );
        until(&c, "the new price at t1", &script, 30).await;
        let congested = c
            .execute(
                "return document.querySelector('#feeder-tree line[data-edge=\"t1\"]').classList.contains('congested')",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(congested, json!(true), "t1's edge is drawn congested");
        let sentinel = c.execute("return window.__sentinel", vec![]).await.unwrap();
        assert_eq!(sentinel, json!("kept"), "the page reloaded");
        let blocks = c
            .execute("return document.querySelectorAll('#block-table tbody tr').length", vec![])
            .await
            .unwrap();
        assert_eq!(blocks, json!(8));

        // Signed in with the participant's read token, the page shows its own site.
        let token = dev.run(&["--json", "query", "token", "--key", house_key]);
        assert_ok(&token);
        let token = common::json_of(&token)["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let input = c
            .find(fantoccini::Locator::Id("token"))
            .await
            .unwrap();
        input.send_keys(&token).await.unwrap();
        c.find(fantoccini::Locator::Css("#signin button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        until(
            &c,
            "the participant's site",
            "return !document.getElementById('mine').hidden && \
             !!document.querySelector('#mine-sites tr[data-site=\"house-7\"]')",
            30,
        )
        .await;
        let sentinel = c.execute("return window.__sentinel", vec![]).await.unwrap();
        assert_eq!(sentinel, json!("kept"), "signing in reloaded the page");

        let png = c.screenshot().await.unwrap();
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
        std::fs::write(&out, png).unwrap();
        eprintln!("screenshot: {}", out.display());

        // No console error, no failed load, no page error, from the first load on.
        let log = c.issue_cmd(BrowserLog).await.expect("the browser log");
        let errors: Vec<&Value> = log
            .as_array()
            .expect("log entries")
            .iter()
            .filter(|e| e["level"] == "SEVERE")
            .collect();
        assert!(errors.is_empty(), "console errors: {errors:#?}");
        c.close().await.unwrap();
    });
}
