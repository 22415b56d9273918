//! Tests of the sandbox API emulation.
