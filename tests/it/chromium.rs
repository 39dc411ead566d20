//! A real headless Chromium (Debian's `chromium`) driven over the DevTools protocol: load a
//! page, collect console errors and uncaught exceptions, evaluate expressions, take a
//! screenshot.
//!
//! Why the protocol by hand over a WebSocket (`tungstenite`) rather than `chromiumoxide` or
//! `headless_chrome`: the tests need six commands (`Target.createTarget`/`attachToTarget`,
//! `Runtime.enable`, `Log.enable`, `Page.navigate`, `Runtime.evaluate`,
//! `Page.captureScreenshot`) and three events; those crates carry generated bindings for the
//! whole protocol (hundreds of thousands of lines to compile on a 2-core CI machine) and pin a
//! protocol revision that Debian's Chromium moves past. The browser is started with its
//! networking features off and talks to nothing but 127.0.0.1 (its DevTools port).
//!
//! Without `chromium` on PATH (or `LEAKHOUND_CHROMIUM`) the tests that need it fail, unless
//! `LEAKHOUND_SKIP_CHROMIUM=1` says to skip them.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

pub fn skip() -> bool {
    if std::env::var_os("LEAKHOUND_SKIP_CHROMIUM").is_some_and(|v| v == "1") {
        eprintln!("LEAKHOUND_SKIP_CHROMIUM=1: skipping a test that needs Chromium");
        return true;
    }
    false
}

fn binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("LEAKHOUND_CHROMIUM") {
        return Ok(PathBuf::from(p));
    }
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Some(dir) = std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .find(|d| d.join(name).is_file())
        {
            return Ok(dir.join(name));
        }
    }
    bail!(
        "no chromium on PATH (apt-get install chromium; tests/run installs it) and no \
         LEAKHOUND_CHROMIUM; LEAKHOUND_SKIP_CHROMIUM=1 skips these tests"
    )
}

/// What loading a page produced.
#[derive(Debug, Default)]
pub struct Console {
    /// console.error calls, uncaught exceptions, and Log entries of level error.
    pub errors: Vec<String>,
}

pub struct Browser {
    child: Child,
    ws: WebSocket<TcpStream>,
    session: String,
    next_id: u64,
    pub console: Console,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    pub fn start() -> Result<Browser> {
        let bin = binary()?;
        let profile = tempfile::tempdir()?;
        let mut child = Command::new(&bin)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-features=Translate,MediaRouter,OptimizationHints",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1200,1600",
                "about:blank",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID" on stderr.
        let stderr = child.stderr.take().context("stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let mut url = None;
        let mut seen = Vec::new();
        for line in lines.by_ref() {
            let line = line?;
            if let Some(u) = line.split("DevTools listening on ").nth(1) {
                url = Some(u.trim().to_string());
                break;
            }
            seen.push(line);
        }
        let Some(url) = url else {
            let _ = child.kill();
            bail!(
                "chromium did not print its DevTools address:\n{}",
                seen.join("\n")
            );
        };
        // Keep draining stderr so the browser never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let rest = url.strip_prefix("ws://").context("ws url")?;
        let host = rest.split('/').next().context("host")?.to_string();
        let stream = TcpStream::connect(&host)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let (ws, _) = tungstenite::client(url.as_str(), stream)
            .map_err(|e| anyhow::anyhow!("DevTools handshake: {e}"))?;
        let mut b = Browser {
            child,
            ws,
            session: String::new(),
            next_id: 0,
            console: Console::default(),
            _profile: profile,
        };
        let t = b.call(None, "Target.createTarget", json!({"url": "about:blank"}))?;
        let target = t["targetId"].as_str().context("targetId")?.to_string();
        let s = b.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target, "flatten": true}),
        )?;
        b.session = s["sessionId"].as_str().context("sessionId")?.to_string();
        for m in ["Runtime.enable", "Log.enable", "Page.enable"] {
            b.page(m, json!({}))?;
        }
        Ok(b)
    }

    fn send(&mut self, session: Option<&str>, method: &str, params: Value) -> Result<u64> {
        self.next_id += 1;
        let mut msg = json!({"id": self.next_id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.ws.send(Message::text(msg.to_string()))?;
        Ok(self.next_id)
    }

    /// Read one protocol message; events are recorded (console errors) and returned too.
    fn read(&mut self) -> Result<Value> {
        loop {
            match self.ws.read()? {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(t.as_str())?;
                    self.record(&v);
                    return Ok(v);
                }
                Message::Close(_) => bail!("DevTools closed the connection"),
                _ => continue,
            }
        }
    }

    fn record(&mut self, v: &Value) {
        let p = &v["params"];
        match v["method"].as_str() {
            Some("Runtime.exceptionThrown") => self.console.errors.push(format!(
                "exception: {}",
                p["exceptionDetails"]["exception"]["description"]
                    .as_str()
                    .or(p["exceptionDetails"]["text"].as_str())
                    .unwrap_or("?")
            )),
            Some("Runtime.consoleAPICalled") if p["type"] == "error" || p["type"] == "assert" => {
                self.console
                    .errors
                    .push(format!("console.{}: {}", p["type"], p["args"]))
            }
            Some("Log.entryAdded") if p["entry"]["level"] == "error" => {
                self.console.errors.push(format!(
                    "log: {} {}",
                    p["entry"]["text"].as_str().unwrap_or("?"),
                    p["entry"]["url"].as_str().unwrap_or("")
                ))
            }
            _ => {}
        }
    }

    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Result<Value> {
        let id = self.send(session, method, params)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let v = self.read()?;
            if v["id"].as_u64() == Some(id) {
                if let Some(e) = v.get("error") {
                    bail!("{method}: {e}");
                }
                return Ok(v["result"].clone());
            }
        }
        bail!("{method}: no answer within 60 s")
    }

    /// A command to the page's session.
    pub fn page(&mut self, method: &str, params: Value) -> Result<Value> {
        let s = self.session.clone();
        self.call(Some(&s), method, params)
    }

    /// Navigate to a file and wait for its load event.
    pub fn load(&mut self, file: &Path) -> Result<()> {
        let url = format!("file://{}", file.canonicalize()?.display());
        let r = self.page("Page.navigate", json!({ "url": url }))?;
        if let Some(e) = r.get("errorText") {
            bail!("navigating to {url}: {e}");
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let v = self.read()?;
            if v["method"] == "Page.loadEventFired" {
                return Ok(());
            }
        }
        bail!("{url}: no load event within 60 s")
    }

    /// Evaluate an expression in the page; its value as JSON.
    pub fn eval(&mut self, expr: &str) -> Result<Value> {
        let r = self.page(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        )?;
        if let Some(e) = r.get("exceptionDetails") {
            bail!("evaluating {expr}: {e}");
        }
        Ok(r["result"]["value"].clone())
    }

    /// A PNG of the whole page.
    pub fn screenshot(&mut self) -> Result<Vec<u8>> {
        use base64::Engine as _;
        let r = self.page(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        )?;
        let data = r["data"].as_str().context("screenshot data")?;
        Ok(base64::engine::general_purpose::STANDARD.decode(data)?)
    }

    /// Read what is pending (events after the load: late errors) for a moment-free check: a
    /// round trip to the page guarantees every event sent before it has been read.
    pub fn settle(&mut self) -> Result<()> {
        self.eval("1")?;
        Ok(())
    }
}
