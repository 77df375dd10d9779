//! Calls to peers, retried with bounded exponential backoff, and the switch that stops a
//! node's background work.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Bytes;

use crate::contract::MemberCard;
use crate::{Error, NodeDir, Result};

/// How a node retries a call to a member that cannot be reached or answers with a
/// server error (5xx). Other answers (a refusal, a 4xx) are not retried: asking again
/// would get the same answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included; at least one is always made.
    pub attempts: u32,
    /// The wait after the first failure; it doubles after each further one.
    pub first_delay: Duration,
    /// The longest wait between two tries.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 8 tries, waiting 0.5, 1, 2, 4, 8, 16 and 30 s between them: a member may be away
    /// for about a minute (a restart, a network blip) before the work that needs it
    /// fails, and a member that is gone is reported within that minute, not never.
    fn default() -> Self {
        Self {
            attempts: 8,
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed try number `failed` (from 1).
    pub fn delay(&self, failed: u32) -> Duration {
        let factor = 1u32
            .checked_shl(failed.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.first_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// A failed try that will be retried: what the host shows while it waits.
#[derive(Debug, Clone)]
pub(crate) struct RetryNote {
    pub(crate) party: String,
    pub(crate) addr: String,
    pub(crate) attempt: u32,
    pub(crate) of: u32,
    pub(crate) error: String,
    pub(crate) wait: Duration,
}

impl std::fmt::Display for RetryNote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): attempt {} of {} failed ({}); next in {:.1} s",
            self.party,
            self.addr,
            self.attempt,
            self.of,
            self.error,
            self.wait.as_secs_f64()
        )
    }
}

/// Stops a node's background work: set when the node stops (or, in tests, halts as if
/// killed); retry loops and match work check it between steps.
#[derive(Debug, Clone)]
pub(crate) struct Halt(Arc<tokio::sync::watch::Sender<bool>>);

impl Default for Halt {
    fn default() -> Self {
        Self(Arc::new(tokio::sync::watch::Sender::new(false)))
    }
}

impl Halt {
    pub(crate) fn set(&self) {
        self.0.send_replace(true);
    }

    pub(crate) fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes once set.
    pub(crate) async fn wait(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|h| *h).await;
    }

    /// Sleeps `d`, or less if the node halts meanwhile; false if it halted.
    pub(crate) async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(d) => !self.is_set(),
            () = self.wait() => false,
        }
    }
}

/// One request to a member.
#[derive(Debug)]
pub(crate) struct Call<'a> {
    pub(crate) method: hyper::Method,
    pub(crate) path: &'a str,
    /// Media type and body.
    pub(crate) body: Option<(&'a str, Bytes)>,
}

/// What a retrying call tells its caller: a failed try that will be retried, or
/// (`None`) that the member answered after earlier failures.
pub(crate) type OnRetry<'a> = &'a (dyn Fn(Option<&RetryNote>) + Send + Sync);

/// Makes `call` to `peer`, retrying transport failures and 5xx answers under `policy`;
/// any other answer (2xx, 3xx, 4xx) is returned as is. After the last try, fails with
/// [`Error::PeerGaveUp`], naming the member, the attempts and the last failure.
pub(crate) async fn call_peer(
    node: &NodeDir,
    peer: &MemberCard,
    call: &Call<'_>,
    policy: RetryPolicy,
    halt: &Halt,
    on_retry: OnRetry<'_>,
) -> Result<(u16, Bytes)> {
    let started = Instant::now();
    let attempts = policy.attempts.max(1);
    let mut failed = 0;
    loop {
        if halt.is_set() {
            return Err(Error::Stopped);
        }
        let body = call.body.as_ref().map(|(t, b)| (*t, b.clone()));
        let answer = crate::server::request_peer(
            node,
            &peer.endpoint,
            &peer.cert_sha256,
            call.method.clone(),
            call.path,
            body,
        )
        .await;
        let error = match answer {
            Ok((status, body)) if status < 500 => {
                if failed > 0 {
                    on_retry(None);
                }
                return Ok((status, body));
            }
            Ok((status, body)) => format!("answered {status}: {}", problem_detail(&body)),
            Err(Error::Peer { message, .. }) => message,
            // Our own identity, a bug: asking again would not help.
            Err(e) => return Err(e),
        };
        failed += 1;
        if failed >= attempts {
            return Err(Error::PeerGaveUp {
                party: peer.party.clone(),
                addr: peer.endpoint.clone(),
                attempts: failed,
                seconds: started.elapsed().as_secs_f64(),
                last: error,
            });
        }
        let wait = policy.delay(failed);
        on_retry(Some(&RetryNote {
            party: peer.party.clone(),
            addr: peer.endpoint.clone(),
            attempt: failed,
            of: attempts,
            error,
            wait,
        }));
        if !halt.sleep(wait).await {
            return Err(Error::Stopped);
        }
    }
}

/// The `detail` of a problem+json answer, else the body as text, shortened.
pub(crate) fn problem_detail(body: &[u8]) -> String {
    let text = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["detail"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    text.chars().take(500).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy {
            attempts: 10,
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
        };
        let waits: Vec<u128> = (1..=6).map(|i| p.delay(i).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.delay(200), Duration::from_millis(1000));
        let d = RetryPolicy::default();
        let total: Duration = (1..d.attempts).map(|i| d.delay(i)).sum();
        assert_eq!(total, Duration::from_millis(61_500));
    }
}
