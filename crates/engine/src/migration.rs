//! A migration, from the source: the destination prepared, the strategy's source half,
//! and how it ends (see [`crate::source`] for the shared steps and the rules of a
//! rollback, [`crate::strategies`] for what each strategy does in between).

use ferry_types::Report;

use crate::error::PrepareError;
use crate::ports::host::HostSettings;
use crate::source::{Events, Holds, SourcePorts, SourceRequest, SourceRun};
use crate::strategies;

/// Migrates a container. Setting the migration up can fail (nothing changed); anything
/// after ends in a report whose outcome says where the container runs. With `holds`, the
/// migration waits for the client's word before freezing (it fails, unchanged, if that
/// is dropped) and before the destination restores (it rolls back if that is dropped).
pub async fn migrate(
    ports: SourcePorts,
    settings: &HostSettings,
    req: SourceRequest,
    events: Events,
    holds: Holds,
) -> Result<Report, PrepareError> {
    let strategy = strategies::of(req.strategy);
    let container = req.container.clone();
    let mut run = SourceRun::new(ports, settings, req, events, holds)?;
    let outcome = match run.connect().await {
        // The destination is this host: there is nothing to move, and nothing changed.
        Ok(host) if host == settings.name => {
            run.abandon();
            return Err(PrepareError::AlreadyHere { container, host });
        }
        Ok(_) => {
            async {
                run.prepare_destination().await?;
                strategy.source(&mut run).await
            }
            .await
        }
        Err(e) => Err(e.into()),
    };
    Ok(match outcome {
        Ok(()) => run.succeed().await,
        Err(e) => run.fail(e).await,
    })
}
