//! `--alert-webhook URL`: each batch of alerts is one POST of a JSON array (Teams
//! workflows, Logic Apps, Event Grid, a SOAR). With `--alert-webhook-secret` the body is
//! signed: `X-Kvlake-Signature: sha256=<hex HMAC-SHA256 of the body>`.

use kvlake_hotpath::speed::alert::alert_id;
use kvlake_hotpath::speed::{Alert, Sink, SinkError, SinkFuture};

use crate::identity::SecretWatch;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-kvlake-signature";

/// One webhook.
pub struct Webhook {
    name: String,
    url: reqwest::Url,
    http: reqwest::Client,
    secret: Option<SecretWatch>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("name", &self.name)
            .field("host", &self.url.host_str())
            .field("signed", &self.secret.is_some())
            .finish()
    }
}

impl Webhook {
    /// A webhook at `url`; its name (metrics label, delivery markers) is derived from the
    /// URL, so a restart with the same URL continues where it stopped.
    pub fn new(
        url: &str,
        http: reqwest::Client,
        secret: Option<SecretWatch>,
    ) -> anyhow::Result<Webhook> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| anyhow::anyhow!("--alert-webhook `{}`: not a URL ({e})", redact(url)))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            anyhow::bail!(
                "--alert-webhook `{}`: must be http:// or https://",
                redact(url)
            );
        }
        let name = format!("webhook-{}", &alert_id("webhook", &[url], "")[..8]);
        Ok(Webhook {
            name,
            url: parsed,
            http,
            secret,
        })
    }
}

/// A URL for messages: scheme, host and path, never the query (tokens live there).
pub fn redact(url: &str) -> String {
    url.split('?').next().unwrap_or("").to_string()
}

/// `sha256=<hex>` of `body` under `key`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let tag = ring::hmac::sign(&k, body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

impl Sink for Webhook {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver<'a>(&'a self, alerts: &'a [Alert]) -> SinkFuture<'a> {
        Box::pin(async move {
            let body = serde_json::to_vec(alerts).map_err(|e| SinkError::retry(e.to_string()))?;
            let mut req = self
                .http
                .post(self.url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json");
            if let Some(s) = &self.secret {
                // The newest value: a rotated secret signs from the next delivery on.
                let key = s.borrow().expose().as_bytes().to_vec();
                req = req.header(SIGNATURE_HEADER, signature(&key, &body));
            }
            let resp = req
                .body(body)
                .send()
                .await
                .map_err(|e| super::transport_error(&self.name, e))?;
            if resp.status().is_success() {
                Ok(())
            } else {
                Err(super::status_error(
                    &self.name,
                    resp.status(),
                    resp.headers(),
                ))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn signature_is_rfc4231_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            super::signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(super::redact("https://h/p?sig=abc"), "https://h/p");
    }
}
