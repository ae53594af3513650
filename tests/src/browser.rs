//! A real browser for the web UI tests: Debian's headless Chromium driven
//! through its own `chromedriver` (WebDriver) with `fantoccini`.
//!
//! [`Browser::start`] starts `chromedriver` on a free loopback port (the
//! binary from `CORRAL_CHROMEDRIVER`, else `chromedriver` on the `PATH`,
//! installed by `scripts/chromium.sh install`) and opens one session;
//! dropping the [`Browser`] kills the driver (and with it the browser).
//! [`Browser::open`] loads a page and fails on any console error (read
//! through chromedriver's log endpoint); [`Browser::screenshot`] writes a
//! PNG at desktop or phone width under `target/webui-screenshots/`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::{free_port, wait_for, workspace_dir};

/// Desktop (laptop) window size.
pub const DESKTOP: (u32, u32) = (1366, 900);
/// Phone window size.
pub const PHONE: (u32, u32) = (390, 844);

/// A headless Chromium session and its driver process.
pub struct Browser {
    driver: Child,
    driver_url: String,
    session: String,
    /// The WebDriver session.
    pub client: Client,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Where the tests write screenshots.
pub fn screenshot_dir() -> PathBuf {
    workspace_dir().join("target").join("webui-screenshots")
}

fn chromedriver() -> String {
    std::env::var("CORRAL_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".to_string())
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session at desktop size.
    pub async fn start() -> Result<Self> {
        let port = free_port();
        let log = std::env::temp_dir().join(format!("corral-chromedriver-{port}.log"));
        let driver = Command::new(chromedriver())
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting chromedriver (scripts/chromium.sh install puts it on the PATH)")?;
        let driver_url = format!("http://127.0.0.1:{port}");
        let status = format!("{driver_url}/status");
        let http = reqwest::Client::new();
        let ready = wait_for(Duration::from_secs(20), || {
            let (http, status) = (http.clone(), status.clone());
            async move {
                match http.get(&status).send().await {
                    Ok(r) => r
                        .json::<Value>()
                        .await
                        .is_ok_and(|v| v["value"]["ready"] == json!(true)),
                    Err(_) => false,
                }
            }
        })
        .await;
        let mut browser_driver = driver;
        if !ready {
            let _ = browser_driver.kill();
            bail!(
                "chromedriver on port {port} did not become ready (log: {})",
                log.display()
            );
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
                ],
            }),
        );
        caps.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = match ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&driver_url)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                let _ = browser_driver.kill();
                bail!("opening a Chromium session through chromedriver: {e}");
            }
        };
        let session = client
            .session_id()
            .await
            .map_err(|e| anyhow!("session id: {e}"))?
            .ok_or_else(|| anyhow!("chromedriver gave no session id"))?;
        Ok(Self {
            driver: browser_driver,
            driver_url,
            session,
            client,
        })
    }

    /// The browser's console messages since the last call (chromedriver
    /// hands each out once): `(level, message)`.
    pub async fn console(&self) -> Result<Vec<(String, String)>> {
        let url = format!("{}/session/{}/se/log", self.driver_url, self.session);
        let answer: Value = reqwest::Client::new()
            .post(&url)
            .json(&json!({ "type": "browser" }))
            .send()
            .await?
            .json()
            .await?;
        let entries = answer["value"]
            .as_array()
            .ok_or_else(|| anyhow!("chromedriver's log answer has no entries: {answer}"))?;
        Ok(entries
            .iter()
            .map(|e| {
                (
                    e["level"].as_str().unwrap_or("").to_string(),
                    e["message"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect())
    }

    /// Fails when the console holds an error (a script error, a failed
    /// request for a page resource).
    pub async fn assert_no_console_errors(&self, page: &str) -> Result<()> {
        let errors: Vec<String> = self
            .console()
            .await?
            .into_iter()
            .filter(|(level, _)| level == "SEVERE")
            .map(|(_, m)| m)
            .collect();
        if !errors.is_empty() {
            bail!("console errors on {page}: {errors:#?}");
        }
        Ok(())
    }

    /// Loads `url`, waits for its `<main>`, and checks the console.
    pub async fn open(&self, url: &str) -> Result<()> {
        self.client
            .goto(url)
            .await
            .with_context(|| format!("loading {url}"))?;
        self.client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css("main"))
            .await
            .with_context(|| format!("{url} has no <main>"))?;
        self.assert_no_console_errors(url).await
    }

    /// The text of the page's `<main>` (as rendered now).
    pub async fn main_text(&self) -> Result<String> {
        let main = self.client.find(Locator::Css("main")).await?;
        Ok(main.text().await?)
    }

    /// Waits until `<main>` contains `text`, without reloading the page.
    pub async fn wait_for_text(&self, text: &str, timeout: Duration) -> Result<()> {
        let found = wait_for(timeout, || async {
            self.main_text().await.is_ok_and(|t| t.contains(text))
        })
        .await;
        if !found {
            let now = self.main_text().await.unwrap_or_default();
            bail!("the page never showed {text:?} within {timeout:?}; it shows:\n{now}");
        }
        Ok(())
    }

    /// Waits until the text of the element matching `css` contains `text`.
    pub async fn wait_for_element_text(
        &self,
        css: &str,
        text: &str,
        timeout: Duration,
    ) -> Result<()> {
        let found = wait_for(timeout, || async {
            match self.client.find(Locator::Css(css)).await {
                Ok(e) => e.text().await.is_ok_and(|t| t.contains(text)),
                Err(_) => false,
            }
        })
        .await;
        if !found {
            bail!("{css} never showed {text:?} within {timeout:?}");
        }
        Ok(())
    }

    /// A number the page keeps in a global or the DOM, by script.
    pub async fn eval(&self, script: &str) -> Result<Value> {
        Ok(self.client.execute(script, vec![]).await?)
    }

    /// Writes a screenshot of the current page at `size` to
    /// `target/webui-screenshots/<name>-<width>.png` and returns its path.
    pub async fn screenshot(&self, name: &str, size: (u32, u32)) -> Result<PathBuf> {
        self.client.set_window_size(size.0, size.1).await?;
        // Let the layout settle at the new width: wait until the viewport
        // reports it (no fixed sleep).
        let width = size.0;
        let settled = wait_for(Duration::from_secs(5), || async {
            self.eval("return window.innerWidth")
                .await
                .ok()
                .and_then(|v| v.as_u64())
                .is_some_and(|w| w.abs_diff(u64::from(width)) < 40)
        })
        .await;
        if !settled {
            bail!("the window never reached width {width}");
        }
        let png = self.client.screenshot().await?;
        if png.len() < 1000 || !png.starts_with(b"\x89PNG") {
            bail!("the screenshot of {name} is not a PNG image");
        }
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}-{}.png", size.0));
        std::fs::write(&path, png)?;
        self.client.set_window_size(DESKTOP.0, DESKTOP.1).await?;
        Ok(path)
    }

    /// Leaves a mark in the page's script state; a reload would lose it
    /// (see [`Browser::assert_not_reloaded`]).
    pub async fn mark_page(&self) -> Result<()> {
        self.eval("window.__corralNotReloaded = true; return true;")
            .await
            .map(|_| ())
    }

    /// Fails when the mark of [`Browser::mark_page`] is gone: the page was
    /// reloaded (or left) instead of updated in place.
    pub async fn assert_not_reloaded(&self) -> Result<()> {
        let mark = self
            .eval("return window.__corralNotReloaded || null;")
            .await?;
        if mark != Value::Bool(true) {
            bail!("the page was reloaded: its script state is gone");
        }
        Ok(())
    }

    /// The page's current URL.
    pub async fn url(&self) -> Result<String> {
        Ok(self.client.current_url().await?.to_string())
    }

    /// Ends the session.
    pub async fn quit(mut self) -> Result<()> {
        let client = self.client.clone();
        client.close().await?;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        Ok(())
    }
}
