//! One container at a time: move it (`ferry migrate`), resume it (`ferry resume`), and
//! the containers an agent runs.

use ferry_proto::{ControlReply, ControlRequest, WireMessage};
use ferry_transport::{Credentials, Endpoint};
use ferry_types::{ContainerInfo, MigrateOptions, Preflight, Report};

use crate::{client, ControllerError};

/// Asks the agent at `source` to move `container` to the agent at `dest` (its peer
/// address), and waits for the migration's report, whatever its outcome. `on_progress`
/// sees the agent's [`ControlReply::Progress`] events on the way.
pub async fn migrate(
    source: &Endpoint,
    creds: &Credentials,
    container: &str,
    dest: &str,
    options: MigrateOptions,
    on_progress: impl FnMut(&ControlReply),
) -> Result<Report, ControllerError> {
    let mut conn = client::source(source, creds).await?;
    let msg = ControlRequest::Migrate {
        container: container.to_string(),
        dest: dest.to_string(),
        options,
    };
    match client::answer(&mut conn, &msg, on_progress).await? {
        ControlReply::Report { report } => Ok(*report),
        other => Err(ControllerError::NotAReport(other.name())),
    }
}

/// Asks the agent at `source` for the preflight of moving `container` (to the agent at
/// `dest`, when given): what it finds and would do, changing nothing.
pub async fn check(
    source: &Endpoint,
    creds: &Credentials,
    container: &str,
    dest: Option<&str>,
    options: MigrateOptions,
) -> Result<Preflight, ControllerError> {
    let mut conn = client::source(source, creds).await?;
    let msg = ControlRequest::Check {
        container: container.to_string(),
        dest: dest.map(str::to_string),
        options,
    };
    match client::answer(&mut conn, &msg, |_| {}).await? {
        ControlReply::Checked { preflight } => Ok(*preflight),
        other => Err(ControllerError::UnexpectedAnswer(other.name())),
    }
}

/// Asks the agent at `agent` to resume `name`, which it keeps frozen after a failed
/// migration.
pub async fn resume(
    agent: &Endpoint,
    creds: &Credentials,
    name: &str,
) -> Result<(), ControllerError> {
    let msg = ControlRequest::Resume {
        name: name.to_string(),
    };
    match client::ask(agent, creds, &msg).await? {
        ControlReply::Resumed => Ok(()),
        other => Err(ControllerError::UnexpectedAnswer(other.name())),
    }
}

/// The containers the agent at `agent` runs. A failed connection is
/// [`ControllerError::Transport`], as it came.
pub async fn list(
    agent: &Endpoint,
    creds: &Credentials,
) -> Result<Vec<ContainerInfo>, ControllerError> {
    let mut conn = client::control(agent, creds).await?;
    match client::request(&mut conn, &ControlRequest::List, |_| {}).await? {
        ControlReply::Containers { items } => Ok(items),
        other => Err(ControllerError::NotAList {
            agent: agent.to_string(),
            answer: other.name(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{FakeAgent, Script};
    use ferry_types::Outcome;

    #[tokio::test]
    async fn a_migration_forwards_progress_and_returns_the_report() {
        let agent = FakeAgent::start(Script::default());
        let mut phases = Vec::new();
        let creds = Credentials::default();
        let options = MigrateOptions::default();
        let r = migrate(
            &agent.endpoint,
            &creds,
            "db",
            "10.0.0.2:7070",
            options,
            |ev| {
                if let ControlReply::Progress { phase, .. } = ev {
                    phases.push(phase.clone());
                }
            },
        )
        .await
        .expect("a report");
        assert_eq!(r.outcome, Outcome::Migrated);
        assert_eq!(r.container, "db");
        assert_eq!(phases, ["prepare", "restore"]);
        assert_eq!(agent.notes(), ["migrate db", "restore db"]);
    }

    #[tokio::test]
    async fn refusals_and_unreachable_agents_are_sentences() {
        let agent = FakeAgent::start(Script {
            refuse: Some("container 'db' does not exist".into()),
            ..Default::default()
        });
        let creds = Credentials::default();
        let e = migrate(
            &agent.endpoint,
            &creds,
            "db",
            "x",
            Default::default(),
            |_| {},
        )
        .await
        .unwrap_err();
        assert!(matches!(e, ControllerError::Refused(_)));
        assert_eq!(e.to_string(), "container 'db' does not exist");
        let e = resume(&agent.endpoint, &creds, "db").await.unwrap_err();
        assert_eq!(e.to_string(), "container 'db' does not exist");

        let nowhere = Endpoint::Unix("/nonexistent/agent.sock".into());
        let e = migrate(&nowhere, &creds, "db", "x", Default::default(), |_| {})
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot reach the source agent at /nonexistent/agent.sock"
        );
        assert!(std::error::Error::source(&e).is_some(), "the cause follows");
        let e = resume(&nowhere, &creds, "db").await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot reach the agent at /nonexistent/agent.sock"
        );
    }

    #[tokio::test]
    async fn resume_and_list_read_their_answers() {
        let agent = FakeAgent::start(Script::default());
        let creds = Credentials::default();
        resume(&agent.endpoint, &creds, "db")
            .await
            .expect("resumed");
        assert!(list(&agent.endpoint, &creds)
            .await
            .expect("a list")
            .is_empty());
    }
}
