//! Headless Chromium (Debian's `chromium`) driven over the DevTools protocol, for the
//! tests of smap's HTML map: open a page, read its DOM by evaluating JavaScript, take a
//! screenshot, and see every request it made and every error it logged.
//!
//! A handful of protocol methods over one WebSocket (tungstenite) is all the tests use;
//! the generated-bindings crates for the whole protocol cost minutes of compile time on
//! CI's two cores for nothing more.

use std::io::ErrorKind;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use crate::{say_skipped, CI_ENV};

/// Where Debian's package puts the browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// How long a protocol call or a page condition may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// Why driving the browser failed.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    /// Chromium could not be started.
    #[error("starting {CHROMIUM}: {0}")]
    Start(std::io::Error),
    /// Chromium did not open its DevTools endpoint, or no page on it, in time.
    #[error("chromium did not open its DevTools port and a page within {0:?}")]
    NoPort(Duration),
    /// The WebSocket to the DevTools endpoint failed.
    #[error("DevTools connection: {0}")]
    Socket(#[from] Box<tungstenite::Error>),
    /// The browser answered a call with an error.
    #[error("{method}: {error}")]
    Call {
        /// The protocol method.
        method: String,
        /// The error object it returned.
        error: Value,
    },
    /// A page condition did not hold in time.
    #[error("timed out after {timeout:?} waiting for `{condition}`")]
    Timeout {
        /// The JavaScript condition.
        condition: String,
        /// How long it waited.
        timeout: Duration,
    },
    /// The page's script threw.
    #[error("evaluating `{expression}`: {details}")]
    Script {
        /// The expression.
        expression: String,
        /// The exception.
        details: Value,
    },
    /// A screenshot was not base64.
    #[error("screenshot: {0}")]
    Screenshot(#[from] base64::DecodeError),
}

/// Whether the tests can drive Chromium here: false (after saying why) when it is not
/// installed, except under CI=true, where it panics: CI must run them.
pub fn require_chromium(test_name: &str) -> bool {
    if Path::new(CHROMIUM).exists() {
        return true;
    }
    let message = format!("skipped: {test_name} needs Debian's chromium ({CHROMIUM} not found)");
    if std::env::var(CI_ENV).is_ok_and(|v| v == "true") {
        panic!("{message}; CI=true, where it must run");
    }
    say_skipped(&message);
    false
}

/// One headless Chromium with one page; killed, and its profile removed, on drop.
pub struct Browser {
    // Held for its Drop: the browser goes when the test is done with it.
    _process: Process,
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    session: String,
    next_id: u64,
    requests: Vec<String>,
    errors: Vec<String>,
}

impl Browser {
    /// Starts Chromium with an empty profile and a 1400x1000 page, and attaches to it.
    pub fn launch() -> Result<Browser, BrowserError> {
        let profile = std::env::temp_dir().join(format!("smap-chromium-{}-{}", std::process::id(), unique()));
        let _ = std::fs::remove_dir_all(&profile);
        // The flags of a closed network: without the background ones Chromium keeps
        // dialing Google's services, and those requests would be counted as the page's.
        let child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                // No name lookups either: a page under test has nothing to resolve, and
                // the capture tests beside it would see the datagrams.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--window-size=1400,1000",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(BrowserError::Start)?;
        let process = Process { child, profile };
        let url = devtools_url(&process.profile)?;
        let (socket, _) = tungstenite::connect(url.as_str()).map_err(Box::new)?;
        if let MaybeTlsStream::Plain(stream) = socket.get_ref() {
            stream.set_read_timeout(Some(STEP_TIMEOUT)).map_err(|e| BrowserError::Socket(Box::new(e.into())))?;
        }
        let mut browser = Browser {
            _process: process,
            socket,
            session: String::new(),
            next_id: 0,
            requests: Vec::new(),
            errors: Vec::new(),
        };
        // The first page may be listed a moment after the endpoint opens.
        let started = Instant::now();
        let page = loop {
            let targets = browser.call("Target.getTargets", json!({}))?;
            let page = targets["targetInfos"]
                .as_array()
                .and_then(|targets| targets.iter().find(|t| t["type"] == "page"))
                .map(|t| t["targetId"].clone());
            match page {
                Some(page) => break page,
                None if started.elapsed() < STEP_TIMEOUT => std::thread::sleep(Duration::from_millis(50)),
                None => return Err(BrowserError::NoPort(STEP_TIMEOUT)),
            }
        };
        let attached = browser.call("Target.attachToTarget", json!({"targetId": page, "flatten": true}))?;
        browser.session = attached["sessionId"].as_str().unwrap_or_default().to_owned();
        for domain in ["Page", "Network", "Runtime", "Log"] {
            browser.call(&format!("{domain}.enable"), json!({}))?;
        }
        Ok(browser)
    }

    /// Opens `url` and waits until its scripts set `document.body.dataset.ready`.
    pub fn open(&mut self, url: &str) -> Result<(), BrowserError> {
        self.call("Page.navigate", json!({"url": url}))?;
        self.wait_for("document.body && document.body.dataset.ready === '1'", STEP_TIMEOUT)
    }

    /// The value of a JavaScript expression in the page (promises awaited).
    pub fn eval(&mut self, expression: &str) -> Result<Value, BrowserError> {
        let result = self
            .call("Runtime.evaluate", json!({"expression": expression, "returnByValue": true, "awaitPromise": true}))?;
        if let Some(details) = result.get("exceptionDetails") {
            return Err(BrowserError::Script { expression: expression.to_owned(), details: details.clone() });
        }
        Ok(result["result"]["value"].clone())
    }

    /// Waits until `condition` (JavaScript) is true in the page.
    pub fn wait_for(&mut self, condition: &str, timeout: Duration) -> Result<(), BrowserError> {
        let started = Instant::now();
        loop {
            if self.eval(&format!("Boolean({condition})"))? == Value::Bool(true) {
                return Ok(());
            }
            if started.elapsed() > timeout {
                return Err(BrowserError::Timeout { condition: condition.to_owned(), timeout });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The page's text (`document.body.innerText`): what a reader, find-in-page or a
    /// screen reader gets.
    pub fn text(&mut self) -> Result<String, BrowserError> {
        Ok(self.eval("document.body.innerText")?.as_str().unwrap_or_default().to_owned())
    }

    /// A PNG of the page as it is drawn now.
    pub fn screenshot(&mut self) -> Result<Vec<u8>, BrowserError> {
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}))?;
        Ok(base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap_or_default())?)
    }

    /// Every URL the page asked for since launch, its own among them.
    pub fn requests(&mut self) -> Result<Vec<String>, BrowserError> {
        self.drain()?;
        Ok(self.requests.clone())
    }

    /// Every error the page logged or threw since launch: console errors, uncaught
    /// exceptions, and the browser's own log errors (a blocked request among them).
    pub fn errors(&mut self) -> Result<Vec<String>, BrowserError> {
        self.drain()?;
        Ok(self.errors.clone())
    }

    /// Reads the events that arrived meanwhile (a round trip flushes them).
    fn drain(&mut self) -> Result<(), BrowserError> {
        self.call("Runtime.evaluate", json!({"expression": "0"})).map(drop)
    }

    fn call(&mut self, method: &str, params: Value) -> Result<Value, BrowserError> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            message["sessionId"] = Value::String(self.session.clone());
        }
        self.socket.send(Message::text(message.to_string())).map_err(Box::new)?;
        loop {
            let reply = match self.socket.read().map_err(Box::new)? {
                Message::Text(text) => serde_json::from_str::<Value>(&text).unwrap_or(Value::Null),
                _ => continue,
            };
            if reply["id"] == id {
                if let Some(error) = reply.get("error") {
                    return Err(BrowserError::Call { method: method.to_owned(), error: error.clone() });
                }
                return Ok(reply["result"].clone());
            }
            self.record(&reply);
        }
    }

    fn record(&mut self, event: &Value) {
        let params = &event["params"];
        match event["method"].as_str() {
            Some("Network.requestWillBeSent") => {
                self.requests.push(params["request"]["url"].as_str().unwrap_or_default().to_owned());
            }
            Some("Runtime.exceptionThrown") => {
                self.errors.push(format!("exception: {}", params["exceptionDetails"]));
            }
            Some("Runtime.consoleAPICalled") if params["type"] == "error" => {
                self.errors.push(format!("console.error: {}", params["args"]));
            }
            Some("Log.entryAdded") if params["entry"]["level"] == "error" => {
                self.errors.push(format!("log: {}", params["entry"]["text"]));
            }
            _ => {}
        }
    }
}

/// The browser process and its profile, gone on drop, also when a test panics.
struct Process {
    child: Child,
    profile: PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// The browser's DevTools WebSocket, from the `DevToolsActivePort` file Chromium writes
/// into its profile (port, then path).
fn devtools_url(profile: &Path) -> Result<String, BrowserError> {
    let started = Instant::now();
    let file = profile.join("DevToolsActivePort");
    while started.elapsed() < STEP_TIMEOUT {
        match std::fs::read_to_string(&file) {
            Ok(text) => {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    return Ok(format!("ws://127.0.0.1:{port}{path}"));
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(BrowserError::Start(e)),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(BrowserError::NoPort(STEP_TIMEOUT))
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// How many distinct colours a PNG has: a blank page has one or two.
pub fn distinct_colours(png: &[u8]) -> usize {
    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let Ok(mut reader) = decoder.read_info() else { return 0 };
    let Some(size) = reader.output_buffer_size() else { return 0 };
    let mut pixels = vec![0; size];
    let Ok(info) = reader.next_frame(&mut pixels) else { return 0 };
    let bytes_per_pixel = info.line_size / usize::try_from(info.width).unwrap_or(1).max(1);
    let mut colours = std::collections::HashSet::new();
    for pixel in pixels[..info.buffer_size()].chunks(bytes_per_pixel.max(1)) {
        colours.insert(pixel.to_vec());
    }
    colours.len()
}
