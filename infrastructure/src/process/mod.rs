//! Process managers: they decide purely (the aggregates' `next_step`) and act separately
//! (platform calls), turning every result into a command.
pub mod publisher;
pub mod refresher;
