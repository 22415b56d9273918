//! The process exit codes, one definition for every command and the service (sysexits.h):
//! 0 done, 1 fatal, 64 usage, 65 needs a person, 73 cannot create the output, 75 try again
//! later, 78 bad configuration.

pub const OK: i32 = 0;
pub const FATAL: i32 = 1;
pub const USAGE: i32 = 64;
pub const DATA: i32 = 65;
pub const CANTCREAT: i32 = 73;
pub const TEMPFAIL: i32 = 75;
pub const CONFIG: i32 = 78;
