//! What the master's unit tests share: a master with default flags and a
//! clock at a given second.

use std::time::Duration;

use clap::Parser;

use super::{Clock, Master};
use crate::flags::MasterFlags;

#[derive(Parser)]
struct Flags {
    #[command(flatten)]
    flags: MasterFlags,
}

/// The default master flags, as `corral master` with no arguments.
pub(crate) fn default_flags() -> MasterFlags {
    Flags::parse_from(["master"]).flags
}

/// A master with default flags on 127.0.0.1:5050.
pub(crate) fn master() -> Master {
    let info = crate::master_info("127.0.0.1".parse().unwrap(), 5050, "localhost");
    Master::new(info, default_flags(), 0.0)
}

/// `secs` seconds after the master started (wall time in 2023).
pub(crate) fn at(secs: u64) -> Clock {
    Clock {
        mono: Duration::from_secs(secs),
        wall: 1_700_000_000.0 + secs as f64,
    }
}
