//! One module per subcommand; each turns parsed flags into a run and a report.

pub mod backfill;
pub mod check;
pub mod cold;
pub mod compact;
pub mod config;
pub mod convert;
pub mod demo;
pub mod generate;
pub mod hot;
pub mod migrate;
pub mod mock_broker;
pub mod report;
