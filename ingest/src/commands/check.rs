//! `kvlake check`: a connectivity and permission doctor.

use anyhow::Result;

use crate::cli::CheckArgs;

pub async fn run(_args: &CheckArgs) -> Result<()> {
    Ok(())
}
