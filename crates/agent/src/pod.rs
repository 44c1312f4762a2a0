//! Pods: containers that share one network namespace, and so one address.
//!
//! A pod's namespace is named after the pod and lives as long as one of its members
//! runs on the host. Its members move together (a group file names them all): the
//! source freezes them together behind one lock, and the destination reports each one
//! restored only once every member is, so that no member's connections are exposed at
//! the destination while another's sockets are still missing there.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use ferry_engine::ports::host::PodError;

use crate::error::Refusal;
use tokio::sync::Notify;

/// The members of one pod arriving at this host.
#[derive(Debug, Default)]
struct Arrivals {
    sessions: usize,
    restored: BTreeSet<String>,
    failed: Option<PodError>,
}

/// Whether a pod's arrival is complete: `Some(Ok)` when every expected member is
/// restored, `Some(Err)` once one of them failed, `None` while some are on their way.
fn settled(a: &Arrivals, expected: &[String]) -> Option<Result<(), PodError>> {
    if let Some(f) = &a.failed {
        return Some(Err(f.clone()));
    }
    expected
        .iter()
        .all(|m| a.restored.contains(m))
        .then_some(Ok(()))
}

/// The pods arriving at this agent.
#[derive(Debug, Default)]
pub struct PodArrivals {
    pods: Mutex<HashMap<String, Arrivals>>,
    changed: Notify,
}

impl PodArrivals {
    fn with<R>(&self, pod: &str, f: impl FnOnce(&mut Arrivals) -> R) -> R {
        let mut pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        let r = f(pods.entry(pod.to_string()).or_default());
        if pods.get(pod).is_some_and(|a| a.sessions == 0) {
            pods.remove(pod);
        }
        drop(pods);
        self.changed.notify_waiters();
        r
    }

    /// Whether members of `pod` are on their way here.
    pub fn arriving(&self, pod: &str) -> bool {
        let pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        pods.get(pod).is_some_and(|a| a.sessions > 0)
    }

    /// A member's incoming session starts.
    pub fn join(&self, pod: &str) {
        self.with(pod, |a| a.sessions += 1);
    }

    /// A member's incoming session ends (committed or dropped).
    pub fn leave(&self, pod: &str) {
        self.with(pod, |a| a.sessions = a.sessions.saturating_sub(1));
    }

    pub fn restored(&self, pod: &str, member: &str) {
        self.with(pod, |a| {
            a.restored.insert(member.to_string());
        });
    }

    pub fn failed(&self, pod: &str, member: &str) {
        self.with(pod, |a| {
            a.failed
                .get_or_insert_with(|| PodError::MemberFailed(member.to_string()));
        });
    }

    /// Waits until every one of `expected` is restored here, or one of them failed.
    pub async fn wait_all(
        &self,
        pod: &str,
        expected: &[String],
        limit: Duration,
    ) -> Result<(), PodError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let state = {
                let pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
                match pods.get(pod) {
                    Some(a) => settled(a, expected),
                    None => Some(Err(PodError::NotArriving(pod.to_string()))),
                }
            };
            if let Some(r) = state {
                return r;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(PodError::Late {
                    pod: pod.to_string(),
                    limit,
                });
            }
        }
    }
}

/// The source's check: a pod member moves only with every other member of its pod.
pub fn check_moving_together(
    container: &str,
    pod: &str,
    mates: &[String],
    moving: &[String],
) -> Result<(), Refusal> {
    let left: Vec<&String> = mates.iter().filter(|m| !moving.contains(m)).collect();
    if left.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = left.iter().map(|m| format!("'{m}'")).collect();
    Err(Refusal::PodLeftBehind {
        container: container.to_string(),
        pod: pod.to_string(),
        left: names.join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_pod_is_settled_when_all_arrived_or_one_failed() {
        let mut a = Arrivals::default();
        let want = names(&["web", "sidecar"]);
        assert_eq!(settled(&a, &want), None);
        a.restored.insert("web".into());
        assert_eq!(settled(&a, &want), None);
        a.restored.insert("sidecar".into());
        assert_eq!(settled(&a, &want), Some(Ok(())));
        a.failed = Some(PodError::MemberFailed("x".into()));
        assert!(matches!(settled(&a, &want), Some(Err(_))));
    }

    #[test]
    fn a_pod_member_cannot_leave_its_mates_behind() {
        assert!(
            check_moving_together("web", "p", &names(&["side"]), &names(&["web", "side"])).is_ok()
        );
        assert!(check_moving_together("web", "p", &[], &[]).is_ok());
        let e = check_moving_together(
            "web",
            "p",
            &names(&["side", "log"]),
            &names(&["web", "side"]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("'log'") && !e.contains("'side'") && e.contains("pod 'p'"));
    }

    #[tokio::test]
    async fn waiting_members_are_woken_by_the_last_arrival_or_a_failure() {
        let p = std::sync::Arc::new(PodArrivals::default());
        p.join("pod");
        p.join("pod");
        p.restored("pod", "a");
        let q = p.clone();
        let w = tokio::spawn(async move {
            q.wait_all("pod", &names(&["a", "b"]), Duration::from_secs(5))
                .await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        p.restored("pod", "b");
        assert_eq!(w.await.unwrap(), Ok(()));

        p.join("other");
        let q = p.clone();
        let w = tokio::spawn(async move {
            q.wait_all("other", &names(&["a", "b"]), Duration::from_secs(5))
                .await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        p.failed("other", "b");
        assert!(w.await.unwrap().unwrap_err().to_string().contains("'b'"));
        let r = p
            .wait_all("pod", &names(&["a", "c"]), Duration::from_millis(30))
            .await;
        assert!(r.unwrap_err().to_string().contains("did not arrive"));
    }
}
