//! TSL UMD tally displays (multiviewers, under-monitor displays): the `tsl-umd` output.

pub mod codec;
